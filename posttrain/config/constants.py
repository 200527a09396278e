"""Names the config schema and the model runtime both need, owned here so config imports nothing above it."""

DEFAULT_MODEL = "smollm2-135m"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
