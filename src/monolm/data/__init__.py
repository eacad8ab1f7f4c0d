"""Datasets: loading (hub, local files, bundled), tokenisation, packing, resumable loaders."""
