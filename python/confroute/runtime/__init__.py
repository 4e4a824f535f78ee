"""What the layers above share and no domain owns: the resumable JSONL checkpoint, the sandbox
that runs generated code, and the Ray jobs (``ray_cluster``, ``distributed``) with the block
store they commit to (``blocks``)."""
