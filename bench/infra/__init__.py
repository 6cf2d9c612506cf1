"""Plumbing every part uses: atomic writes, child processes (launcher), cluster jobs (cluster), the lock of a
run folder's stage (stage_lock) and safe YAML reading (yaml_file)."""
