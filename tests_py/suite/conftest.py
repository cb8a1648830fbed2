# The drivers here run CPython's suite in their own interpreters (see
# run_suite.py); pytest must not import them (they alias multiprocessing).
collect_ignore_glob = ['*.py']
