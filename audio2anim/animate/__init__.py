"""Offline runs of the live method graphs: ``audio2anim animate`` and the graph edits it uses."""
