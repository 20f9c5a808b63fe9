#!/usr/bin/env bash
# One prepared GPU check, at most 5 minutes end to end: HOST-CP selection, kNN and the torch
# evaluator, CPU vs CUDA, printed as one markdown table (benchmarks/gpu_check.py says what is
# measured and checked). Runs as is on a lent GPU machine with the repository copied:
#
#   bash benchmarks/gpu_check.sh            # full sizes (kNN 20k/1M, HOST-CP 2k/20k/1M)
#   bash benchmarks/gpu_check.sh --quick    # tiny sizes: a CPU-only machine ("no CUDA", CPU rows)
#
# Python: $PYTHON if set; else .venv (made by `make setup`, run here first if .venv was never
# completed, bounded by SETUP_LIMIT_S); else python3 as it is (a machine without network where
# make setup cannot install; wheels in .whl/ are installed for it first). Rows whose packages
# are missing say "skipped: <why>".
# GPU_CHECK_LIMIT_S (300) is the whole script's limit; the rows share what set-up leaves.
set -u
cd "$(dirname "$0")/.." || exit 1
start=$(date +%s)
limit=${GPU_CHECK_LIMIT_S:-300}
setup_limit=${SETUP_LIMIT_S:-90}

usable() { "$1" -c "import numpy, torch, sklearn" >/dev/null 2>&1; }

online() { timeout 5 python3 -c "import socket; socket.create_connection(('pypi.org', 443), 3)" 2>/dev/null; }

# a machine without network may get the missing packages as wheels in .whl/ (cvxpy, cvxpylayers,
# diffcp, clarabel, scs, osqp, qdldl, highspy, sparsediffpy, cffi, pycparser, faiss-cpu)
wheels=0
if compgen -G ".whl/*.whl" >/dev/null && [ ! -f .venv/.installed ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} && wheels=1
fi

py=${PYTHON:-}
if [ -z "$py" ]; then
  if [ -f .venv/.installed ] && usable .venv/bin/python; then
    py=.venv/bin/python
  elif [ "$wheels" = 1 ] || ! online; then
    echo "no complete .venv and no network (or wheels given): using python3 with the packages it has"
    py=python3
  else
    echo "no complete .venv: running make setup (at most ${setup_limit} s; log in /tmp/gpu_check_setup.log)"
    if timeout "$setup_limit" make setup >/tmp/gpu_check_setup.log 2>&1 && usable .venv/bin/python; then
      py=.venv/bin/python
    else
      echo "make setup did not finish (no network?); using python3 with the packages it has"
      py=python3
    fi
  fi
fi
if ! usable "$py"; then
  echo "$py lacks numpy, torch or scikit-learn; cannot run the check" >&2
  exit 2
fi

left=$(( limit - ($(date +%s) - start) ))
if [ "$left" -lt 60 ]; then
  echo "only ${left} s left after set-up; not starting the check" >&2
  exit 3
fi
echo "python: $py ($("$py" -c 'import sys; print(sys.version.split()[0])')); ${left} s left for the rows"
export PYTHONUNBUFFERED=1
# the rows get the time left minus a margin; timeout is the backstop if one overruns its cap
timeout --kill-after=10 "$(( left - 5 ))" "$py" benchmarks/gpu_check.py --budget-s "$(( left - 30 ))" "$@"
