"""condor-seed: build, prove and publish HTCondor-in-the-Cloud seed images."""

__version__ = "0.1.0"
