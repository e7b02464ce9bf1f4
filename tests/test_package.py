"""The package imports on its own and carries its version."""

import importlib.metadata

import mini_llm


def test_version_matches_metadata():
    assert mini_llm.__version__ == importlib.metadata.version("mini-llm")
