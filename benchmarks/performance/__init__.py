"""Speed and memory: the speed suite, the data-preparation timings, the GPU check."""
