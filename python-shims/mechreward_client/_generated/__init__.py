"""gRPC stubs generated from ../proto/mechreward/v1/reward.proto by generate_stubs.py.

Everything else in this folder is written at build or install time (``pip install``, ``pip install -e``,
``python generate_stubs.py``) and git-ignored: never edit it by hand, regenerate it.
"""
