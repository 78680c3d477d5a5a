"""Data products made from verdicts: exports (snapshots), Stage-2 curation, the LLM judge,
and the export API."""
