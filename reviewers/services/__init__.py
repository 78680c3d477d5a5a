"""Writes for the reviewers app: consensus, escalations, adjudication, gold pairs.

Modules: ``consensus`` (what happens when a label arrives, re-tests), ``escalations`` (opening
them, the model-contradiction rule, claims), ``adjudications`` (the expert's final decision),
``gold`` (marking and promoting gold pairs), ``weighted_consensus`` (Dawid–Skene re-settling),
``annotator_report`` (time and pay).
"""
