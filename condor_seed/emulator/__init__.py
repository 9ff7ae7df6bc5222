"""The AWS emulator side of the tests and benchmarks (needs the `[test]` extras: moto).

Tests and benchmarks import it the same way (`from condor_seed.emulator.aws import GuestSimulator`);
nothing in the pipeline imports it. `condor_seed.imds` is its IMDSv2 counterpart.
- `aws`: moto set-up, the simulated guest (console markers), image delays, the call recorder;
- `account`: answers for the account calls moto lacks (image block public access, deprecation) and
  injected failures, validated against the real API model;
- `htcondor_repo`: a local HTTP server serving HTCondor repository metadata (the upstream check).
"""
