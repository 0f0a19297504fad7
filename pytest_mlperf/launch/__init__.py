"""Starting a test's ranks on several devices: torchrun on this host, Slurm across nodes."""
