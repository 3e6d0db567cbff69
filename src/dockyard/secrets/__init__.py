"""`dockyard secrets`: fetch secrets from password managers through their own command-line tools.

Each adapter drives one vendor CLI (`op`, `bw`, `bws`, `aws`, `gcloud`, `doppler`, `lpass`,
`passbolt`, `enpass-cli`) with the arguments Kamal's adapter of the same name uses, so a
`.kamal/secrets` file written for Kamal fetches the same values. `ops` holds the `fetch` and
`extract` operations shared by the CLI and by the in-process evaluation of
`$(kamal secrets ...)` in secrets files.
"""
