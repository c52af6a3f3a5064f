"""Pictures and analyses: HOG glyphs (``hog_glyphs``), reconstruction grids (``reconstruction``),
attention distance / NMI (``attention``), shared model and image loading (``inputs``).

Submodules are imported explicitly (nothing is registered), so importing this package stays cheap.
"""
