"""Run records: the typed schema with its one writer and reader (schema), where a record comes from
(provenance: config hash, environment, commit, time) and when stages ran (spans)."""
