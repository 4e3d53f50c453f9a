# Two commands on a fresh machine (see README):  make train   and   make test
# The venv lives in .venv; torch's CPU build is installed first so nothing pulls a CUDA build.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
# where torch comes from: pip's own index by default (here it serves the CPU wheel from local disk);
# on plain PyPI (x86_64 Linux: the CUDA build) pass TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.PHONY: setup train test bench clean

$(BIN)/downpour: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

setup: $(BIN)/downpour

train: setup          ## the main job: the cat network on the parameter server, then the report
	$(BIN)/downpour train $(ARGS)

# PYTHONDONTWRITEBYTECODE emptied: where it is set, every process the suite starts (each Ray actor, fold and CLI
# subprocess: hundreds) compiled downpour's sources again; their cached bytecode took ~5% off a process-heavy file
# (tests/test_faults.py 33.7 s -> 31.0-32.2 s, 2026-12-05, 2 cores)
# TEST_JOBS processes (pytest-xdist): a module at a time to whichever process is free, the modules on the shared Ray
# together and first (tests/conftest.py); TEST_JOBS=0 runs the suite in this one process
TEST_JOBS ?= 2
test: setup           ## the whole test suite (what CI runs)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -n $(TEST_JOBS) --no-loadscope-reorder $(ARGS)

# rank_interval is skipped: a simulation over a costs study's cells.jsonl (its required argument), no speed figure;
# report_figures, verdict_figure, stimulus_grad and analysis_parts too: they read an analysed run (--run RUN, required);
# architectures_* (a subcommand, required), main_job_phases, twin_actors and step_profile (--out, required: training)
bench: setup          ## every benchmark, one JSON line per row
	for b in bench/[!_]*.py; do \
	  case $$b in \
	    bench/sandblaster.py) args=backups ;; \
	    bench/rank_interval.py|bench/report_figures.py|bench/verdict_figure.py|bench/stimulus_grad.py|\
	    bench/analysis_parts.py|bench/architectures_steps.py|bench/architectures_why_cat.py|\
	    bench/main_job_phases.py|bench/twin_actors.py|bench/step_profile.py) continue ;; \
	    *) args= ;; \
	  esac; \
	  $(BIN)/python $$b $$args || exit 1; \
	done

clean:
	rm -rf $(VENV) runs .pytest_cache
