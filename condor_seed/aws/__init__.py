"""Every AWS call of condor-seed lives in this package (one module per cloud step)."""
