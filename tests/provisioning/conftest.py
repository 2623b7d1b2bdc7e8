"""The shared cluster fixtures (clusters_dir, shared_cluster) live in tests/conftest.py,
since tests outside provisioning (the CLI's) need them too."""
