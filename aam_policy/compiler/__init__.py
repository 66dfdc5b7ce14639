"""Intent templates -> an OPA bundle: one Rego module and one Rego test module per intent.

```python
from aam_policy.compiler import compile_bundle
from aam_policy.intents import load_intents

intents = [item.intent for item in load_intents(["fixtures/intents"])]
bundle = compile_bundle(intents, Path("build/bundle"), tarball=Path("build/bundle.tar.gz"))
print(bundle.revision)
```

Layout: `.manifest`, `data.json` (`data.aam.registry`), `aam/core/*.rego` (the core library),
`aam/intents/<pkg>.rego`, `aam/tests/<pkg>_test.rego`. Compiling the same intents twice gives
byte-identical files and tarball; a failed compile (`CompileError`) writes nothing. With
`signing=signing_config("key.pem")` the bundle also holds `.signatures.json`, as
`opa build --signing-key` writes it (same key, same bytes).
"""

from aam_policy.compiler._bundle import CompiledBundle, compile_bundle, core_rego_dir
from aam_policy.compiler._errors import CompileError
from aam_policy.compiler._examples import baseline_request, merge_request
from aam_policy.compiler._signing import SIGNING_ALGORITHMS, SigningConfig, signing_config

__all__ = [
    "SIGNING_ALGORITHMS",
    "CompileError",
    "CompiledBundle",
    "SigningConfig",
    "baseline_request",
    "compile_bundle",
    "core_rego_dir",
    "merge_request",
    "signing_config",
]
