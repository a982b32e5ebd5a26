"""Tables 1-3 and Figures 3-5 of the paper."""
