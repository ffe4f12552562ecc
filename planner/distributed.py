"""Solving on every device of a machine and every process of a cluster.

`shard_batch` splits a batched solve over the local devices; `initialize`, `owns_chunk` and
`barrier` run a table over the processes of a cluster on `jax.distributed` (what
`planner solve --coordinator ...` does); `cpu_devices` and `default_dtype` set up the host.
See [scaling up](../scaling.md).
"""

from ._shard import barrier as barrier
from ._shard import cpu_devices as cpu_devices
from ._shard import default_dtype as default_dtype
from ._shard import initialize as initialize
from ._shard import owns_chunk as owns_chunk
from ._shard import shard_batch as shard_batch
