"""The intake: patients found where they are reported.

HL7 v2 over MLLP (``mllp``, ``hl7v2``) and FHIR R4 resources (``fhir``) are read into one
``Received`` shape (``message``), searched by every pathway's detector (``receive``: the pathway
declares it, ``carepath.engine.intake``), stored with the candidates they raise before they are
acknowledged (``db.intake``), and offered to a coordinator, who confirms or dismisses each
(``candidates``). Nothing here enrolls anyone or records an event by itself.
"""
