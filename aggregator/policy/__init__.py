"""Pure decisions over plain data, no I/O: when a feed is due, which items are
the same item, which date a post gets, which items pass the filters, how
politely a host is polled, what an RSSHub failure means.

Modules are imported by their full name; this package exports nothing.
"""
