"""What several test files share, kept out of the test_*.py modules so that no test module
imports another:

- ``helpers.data``: where shared/data is (``DATA``, ``needs_data``, the ``data_dir`` fixture's
  choice between it and the tiny set) and a hand-made copy of its layout with edge cases
- ``helpers.tiny_data``: a tiny invented data set in the shared/data layout, which the tests
  write themselves where the shared files are absent
- ``helpers.processes``: starting and stopping llama_cpp.server processes; ``THREADS``
- ``helpers.servers``: the real ``confroute serve`` process, a controllable cloud stand-in, a
  trained ``sw`` router for the server tests
- ``helpers.reference``: per-query NumPy references of the core's computations
- ``helpers.routers``: synthetic embeddings and label rows for the router tests
- ``helpers.edge``: counting an edge model's prefills
- ``helpers.labels``: a deterministic stand-in for the label job's sampling

pytest imports this package as ``helpers``: tests/ is on ``sys.path`` through
``pythonpath = ["tests"]`` in pyproject.toml (and, as before, through the rootdir-based
insertion of each test file's and conftest.py's folder under the default import mode).
"""
