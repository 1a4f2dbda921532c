"""Where the test data lives: the repo's seeds and the shared feed corpus."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "seeds"
#: Real-world feeds, used in place (never copied into the repo).
CORPUS = REPO.parent / "shared" / "corpus"
