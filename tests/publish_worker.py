"""A writer to kill: for each ``go`` line on stdin it forks a child that publishes two local state
folders to one URL, alternately, until the test SIGKILLs it.

    python tests/publish_worker.py URL FOLDER_A FOLDER_B

Prints ``ready`` once imported, then for each ``go`` the child's pid, ``started`` when the child
begins publishing, and ``reaped`` once the child is dead. Forking spares each kill the imports (seconds on a loaded machine), so the kills
land inside publish_state.
"""

import os
import sys
from pathlib import Path

from retentive.state.remote import publish_state
from retentive.state.remote.filesystem import open_url

url, folders = sys.argv[1], [Path(p) for p in sys.argv[2:4]]
open_url(url)[0].exists(url)  # s3fs imported and used once
print("ready", flush=True)
for line in sys.stdin:
    if line.strip() != "go":
        break
    pid = os.fork()
    if pid == 0:  # the child: publish until killed (fsspec starts a fresh event loop after a fork)
        open_url(url)[0].exists(url)
        print("started", flush=True)
        round_ = 0
        while True:
            publish_state(folders[round_ % 2], url)
            round_ += 1
    print(pid, flush=True)
    os.waitpid(pid, 0)
    print("reaped", flush=True)
