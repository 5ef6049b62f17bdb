"""Corpus recipes: each turns sources + a seed into a folder of audio and JSONL manifests."""
