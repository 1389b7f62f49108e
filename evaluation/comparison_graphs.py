"""API-format ComfyUI graphs that generate one comparison image per method, for one case and seed.

Every method shares the checkpoint, prompt, negative prompt, seed, sampler and size; with a content image,
the text-to-image methods start from it (VAE-encoded, `content_denoise`) so that their content scores mean
something, and OSASIS inverts it (its own structural path; it takes no prompt and no seed). IP-Adapter runs
on the IPAdapter+ pack's nodes with values its /object_info lists; it is only built when they are there.
"""
IPADAPTER_NODES = ("IPAdapterUnifiedLoader", "IPAdapterAdvanced")
PLACEHOLDER = "sks"


class Graph:
    def __init__(self):
        self.nodes = {}

    def add(self, class_type: str, **inputs) -> str:
        node_id = str(len(self.nodes) + 1)
        self.nodes[node_id] = {"class_type": class_type, "inputs": inputs}
        return node_id


def _start(g: Graph, spec, case, image_names: dict):
    """Checkpoint, negative prompt and the starting latent (content image at content_denoise, else empty)."""
    s = spec.sampling
    checkpoint = g.add("CheckpointLoaderSimple", ckpt_name=spec.checkpoint)
    if case.content is None:
        latent = g.add("EmptyLatentImage", width=s["width"], height=s["height"], batch_size=1)
        return checkpoint, [latent, 0], 1.0
    content = g.add("LoadImage", image=image_names[case.content])
    scaled = g.add("ImageScale", image=[content, 0], upscale_method="bicubic", width=s["width"], height=s["height"],
                   crop="center")
    return checkpoint, [g.add("VAEEncode", pixels=[scaled, 0], vae=[checkpoint, 2]), 0], s["content_denoise"]


def _sample_and_save(g: Graph, spec, seed: int, model, clip, positive, latent, denoise, checkpoint, method: str):
    s = spec.sampling
    negative = g.add("CLIPTextEncode", text=s["negative"], clip=clip)
    sampled = g.add("KSampler", seed=seed, steps=s["steps"], cfg=s["cfg"], sampler_name=s["sampler"],
                    scheduler=s["scheduler"], denoise=denoise, model=model, positive=positive, negative=[negative, 0],
                    latent_image=latent)
    decoded = g.add("VAEDecode", samples=[sampled, 0], vae=[checkpoint, 2])
    g.add("SaveImage", filename_prefix=f"StyleSmith-eval/{method}", images=[decoded, 0])
    return g.nodes


def style_tokens_graph(spec, case, seed: int, image_names: dict) -> dict:
    g = Graph()
    checkpoint, latent, denoise = _start(g, spec, case, image_names)
    encoder = g.add("StyleSmithStyleEncoderLoader", encoder_name=case.models["style_encoder"])
    reference = g.add("LoadImage", image=image_names[case.reference])
    tokens = g.add("StyleSmithImageToStyleTokens", style_encoder=[encoder, 0], image=[reference, 0], batch_mode="per image")
    positive = g.add("StyleSmithEncodePromptWithStyle", clip=[checkpoint, 1], style_tokens=[tokens, 0],
                     text=f"{case.prompt}, in the style of {PLACEHOLDER}", placeholder=PLACEHOLDER)
    return _sample_and_save(g, spec, seed, [checkpoint, 0], [checkpoint, 1], [positive, 0], latent, denoise,
                            checkpoint, "style_tokens")


def styleforge_graph(spec, case, seed: int, image_names: dict) -> dict:
    g = Graph()
    checkpoint, latent, denoise = _start(g, spec, case, image_names)
    lora = g.add("StyleSmithStyleForgeLoraLoader", model=[checkpoint, 0], clip=[checkpoint, 1],
                 lora_name=case.models["styleforge_lora"], strength_model=1.0, strength_clip=1.0)
    prompt = g.add("StyleSmithStyleForgePrompt", components=[lora, 3], template=f"{case.prompt}, {{all}}")
    positive = g.add("CLIPTextEncode", text=[prompt, 0], clip=[lora, 1])
    return _sample_and_save(g, spec, seed, [lora, 0], [lora, 1], [positive, 0], latent, denoise, checkpoint, "styleforge")


def osasis_graph(spec, case, seed: int, image_names: dict) -> dict:
    """OSASIS Structural Encode -> Decode of the content image, as the osasis-stylise workflow (no seed: deterministic)."""
    g, o, s = Graph(), spec.osasis, spec.sampling
    checkpoint = g.add("CheckpointLoaderSimple", ckpt_name=spec.checkpoint)
    encoder = g.add("StyleSmithStyleEncoderLoader", encoder_name=case.models["style_encoder"])
    content = g.add("LoadImage", image=image_names[case.content])
    scaled = g.add("ImageScale", image=[content, 0], upscale_method="bicubic", width=s["width"], height=s["height"],
                   crop="center")
    reference = g.add("LoadImage", image=image_names[case.reference])
    latent = g.add("VAEEncode", pixels=[scaled, 0], vae=[checkpoint, 2])
    template = f"a picture in the style of {PLACEHOLDER}"
    z_content = g.add("StyleSmithOsasisSemanticEncode", image=[scaled, 0], clip=[checkpoint, 1],
                      style_encoder=[encoder, 0], template=template, placeholder=PLACEHOLDER)
    z_style = g.add("StyleSmithOsasisSemanticEncode", image=[reference, 0], clip=[checkpoint, 1],
                    style_encoder=[encoder, 0], template=template, placeholder=PLACEHOLDER)
    structure = g.add("StyleSmithOsasisStructuralEncode", model=[checkpoint, 0], latent=[latent, 0], z_content=[z_content, 0],
                      t0=o["t0"], steps=o["steps"], scheduler=s["scheduler"], inversion_iterations=o["inversion_iterations"])
    style = g.add("StyleSmithOsasisStyleLoader", style_name=case.models["osasis_style"])
    decoded_latent = g.add("StyleSmithOsasisDecode", model=[checkpoint, 0], structure=[structure, 0], z_content=[z_content, 0],
                           mix=o["mix"], spn_weight=o["spn_weight"], lora_strength=o["lora_strength"],
                           osasis_style=[style, 0], z_style=[z_style, 0])
    decoded = g.add("VAEDecode", samples=[decoded_latent, 0], vae=[checkpoint, 2])
    g.add("SaveImage", filename_prefix="StyleSmith-eval/osasis", images=[decoded, 0])
    return g.nodes


def _widget_defaults(class_type: str, object_info: dict) -> dict:
    """Defaults of the required widget inputs (not links) of a node, as its /object_info lists them."""
    defaults = {}
    for name, spec in object_info[class_type]["input"].get("required", {}).items():
        kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
        if isinstance(kind, list) and kind:              # a combo: its first option unless it says otherwise
            defaults[name] = options.get("default", kind[0])
        elif kind == "COMBO" and options.get("options"):
            defaults[name] = options.get("default", options["options"][0])
        elif "default" in options:
            defaults[name] = options["default"]
    return defaults


def _combo_value(class_type: str, name: str, wanted, object_info: dict):
    """`wanted` if the node offers it for `name`, else the node's default (IPAdapter+ versions differ in names)."""
    spec = object_info[class_type]["input"]["required"].get(name)
    if spec is None:
        return None
    options = spec[0] if isinstance(spec[0], list) else spec[1].get("options", [])
    return wanted if wanted in options else _widget_defaults(class_type, object_info).get(name)


def ipadapter_graph(spec, case, seed: int, image_names: dict, object_info: dict) -> dict:
    g, ip = Graph(), spec.ipadapter
    checkpoint, latent, denoise = _start(g, spec, case, image_names)
    loader_inputs = _widget_defaults("IPAdapterUnifiedLoader", object_info)
    loader_inputs.update(model=[checkpoint, 0], preset=_combo_value("IPAdapterUnifiedLoader", "preset", ip["preset"], object_info))
    loader = g.add("IPAdapterUnifiedLoader", **loader_inputs)
    reference = g.add("LoadImage", image=image_names[case.reference])
    apply_inputs = _widget_defaults("IPAdapterAdvanced", object_info)
    apply_inputs.update(model=[loader, 0], ipadapter=[loader, 1], image=[reference, 0], weight=ip["weight"])
    weight_type = _combo_value("IPAdapterAdvanced", "weight_type", ip["weight_type"], object_info)
    if weight_type is not None:
        apply_inputs["weight_type"] = weight_type
    adapted = g.add("IPAdapterAdvanced", **apply_inputs)
    positive = g.add("CLIPTextEncode", text=case.prompt, clip=[checkpoint, 1])
    return _sample_and_save(g, spec, seed, [adapted, 0], [checkpoint, 1], [positive, 0], latent, denoise,
                            checkpoint, "ipadapter")


def why_skipped(method: str, case, object_info: dict) -> str | None:
    """Why `method` cannot run for `case` here, or None when it can."""
    if method == "ipadapter":
        absent = [n for n in IPADAPTER_NODES if n not in object_info]
        return (f"the IP-Adapter nodes {absent} are not installed in this ComfyUI (install the ComfyUI_IPAdapter_plus "
                "pack and its models to compare with it)") if absent else None
    needs = {"style_tokens": ["style_encoder"], "styleforge": ["styleforge_lora"],
             "osasis": ["osasis_style", "style_encoder"]}[method]
    missing = [k for k in needs if not case.models.get(k)]
    if missing:
        return f"the spec gives no {' / '.join(missing)} for case {case.name!r}"
    if method == "osasis" and case.content is None:
        return f"case {case.name!r} has no content image, and OSASIS stylises one"
    return None


def method_graph(method: str, spec, case, seed: int, image_names: dict, object_info: dict) -> dict:
    if method == "ipadapter":
        return ipadapter_graph(spec, case, seed, image_names, object_info)
    return {"style_tokens": style_tokens_graph, "styleforge": styleforge_graph,
            "osasis": osasis_graph}[method](spec, case, seed, image_names)
