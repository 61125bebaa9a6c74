"""Alert sinks: each delivers the evaluator's alerts to one kind of receiver."""
