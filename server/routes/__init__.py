"""One route module per resource: health, models, transcriptions, jobs."""
