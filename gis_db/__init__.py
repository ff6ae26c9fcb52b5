"""The system of record: embedded cluster, schema, inventory import/export, matching, workflow."""
