"""Value formats that several packages read (config.md §3.4): one grammar each, one home each.

A shared leaf: it imports nothing of Ductile, so config, plugins, commands and the CLI may all
import it.
"""
