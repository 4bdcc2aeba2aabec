"""Data: datasets in their layouts (sources), cleaning into data/cleaned (cleaning, staged_output, near_duplicates),
how photos are read and shown to a model (reading, transforms), the cleaned metadata (metadata), class weights and
shot groups (longtail), the class hierarchy (hierarchy), AI Challenger's tables and the synthetic demo (demo_data)."""
