"""The fault suite (`make chaos`): seeded faults against the real local broker and registry while a workload
is published, then an audit of the committed outputs against the offline engine."""
