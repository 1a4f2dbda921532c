"""aggregator: a feed daemon that archives outlet feeds as Hexo-ready posts."""

__version__ = "0.1.0"
