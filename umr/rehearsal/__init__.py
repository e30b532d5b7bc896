"""The rehearsal of the paper run on a CPU: miniature sources in the published formats (see umr.rehearsal.run)."""
