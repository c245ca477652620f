"""Official dataset splits, as plain CSV files (``video,split``) read by `pipeline.datasets`."""
