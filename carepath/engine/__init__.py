"""The care-pathway engine: what every pathway shares, and the protocol a pathway plugs in by.

The workflow, activities, service, API, worklist and FHIR export know only this package; a
pathway (``carepath/pathways/<id>/``) brings its definitions, inputs, state and rules, and is
found in ``registry`` by its definition id. Nothing here does I/O or imports Temporal.
"""
