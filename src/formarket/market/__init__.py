"""The marketplace repository, as one porcelain over dulwich.

Every other package reads and writes git through here: `trees` reads folders and files at a
commit, `writer` is the one writer (a bot commit by compare-and-swap).
"""
