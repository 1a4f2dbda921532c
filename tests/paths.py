"""Where the test data lives: the repo's seeds and the shared feed corpus."""

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
#: Real-world feeds, used in place (never copied into the repo).  A git
#: worktree elsewhere names it with AGGREGATOR_TEST_CORPUS.
CORPUS = Path(os.environ.get("AGGREGATOR_TEST_CORPUS") or REPO.parent / "shared" / "corpus")
#: Post files the original generator wrote into public Hexo archives, used in
#: place; AGGREGATOR_TEST_ARCHIVE_REAL points elsewhere (e.g. from a worktree).
ARCHIVE_REAL = Path(
    os.environ.get("AGGREGATOR_TEST_ARCHIVE_REAL") or REPO.parent / "shared" / "archive-real"
)
