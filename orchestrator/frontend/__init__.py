"""Front end: YAML files and the Python builder, both parsed into one `PipelineSpec`."""
