"""The configuration: invoke's layers read strictly and checked against one schema, then one validated Settings.

kinds.py (a value's shape, INVOKE_* parsing) -> validators.py (the checks of one value) -> schema.py (every setting
once: kind, validator, doc, what it goes into) -> layers.py (files, INVOKE_*, flags, each checked) -> settings.py
(the merged, validated Settings and the rules between settings).
"""
