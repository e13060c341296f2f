"""Model weights shipped with fusecli (installed as the `fusecli.weights` package)."""
