"""A user's checkpoint, loaded by ComfyUI's own loader, with what diffusion training needs.

Trainers reach ComfyUI's models through this: model loading (comfy.sd), the model's own noise schedule and
prediction type (model_sampling / apply_model), its conditioning inputs (extra_conds), and
preview sampling (comfy.sample). So trainer and nodes see exactly the same model.
"""
from contextlib import contextmanager
from pathlib import Path

import torch

from .core_modules import checkpoint_family, ddim, errors, families, gradient_checkpointing
from . import objective
from .families import family_of_model
from .llm_gradients import allow_llm_gradients
from .style_prompt import tokenize_with_style


class ComfyDiffusion:
    """A single-file checkpoint (`ComfyDiffusion(path, device)`), or a family's split files
    (comfy_adapter.split_files.open_split_files, through `from_parts`): the same object either way."""

    def __init__(self, checkpoint: Path, device: torch.device):
        import comfy.sd
        checkpoint = Path(checkpoint)
        checkpoint_family.checkpoint_family(checkpoint)   # missing, pickled or not SD1.x / SDXL: a clear error before ComfyUI reads it
        model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config(str(checkpoint), output_vae=True, output_clip=True)
        if clip is None or vae is None:
            raise errors.UserValueError(f"{checkpoint.name} holds no text encoder or no VAE; training needs a full checkpoint.")
        self._take(model, clip, vae, device)

    @classmethod
    def from_parts(cls, model, clip, vae, device: torch.device) -> "ComfyDiffusion":
        """The object for a MODEL, CLIP and VAE that ComfyUI's own loaders loaded (split files)."""
        diffusion = cls.__new__(cls)
        diffusion._take(model, clip, vae, device)
        return diffusion

    def _take(self, model, clip, vae, device: torch.device) -> None:
        """Hold ComfyUI's MODEL, CLIP and VAE frozen, loaded on `device`."""
        import comfy.model_management
        self.model, self.clip, self.vae = model, clip, vae
        self.family = family_of_model(self.model).key
        self.downscale = family_of_model(self.model).latent_downscale
        self.device = device
        comfy.model_management.load_models_gpu([self.model, self.clip.patcher], force_full_load=True)
        self.unet = self.model.model
        self.unet.requires_grad_(False)
        self.clip.cond_stage_model.requires_grad_(False)
        self.vae.first_stage_model.requires_grad_(False)

    @contextmanager
    def training(self):
        """Back-propagation through the denoiser: ComfyUI's `in_training` switch, as its own training node sets it,
        swaps fused kernels without a backward (comfy_kitchen's rotary embedding, which the DiTs use) for their
        torch forms, the same values; restored on the way out."""
        import comfy.model_management
        clone_layer_norm_inputs(self.unet_module)    # Flux's blocks add to their streams in place, as CLIP's layers do
        before = getattr(comfy.model_management, "in_training", False)
        comfy.model_management.in_training = True
        try:
            yield
        finally:
            comfy.model_management.in_training = before

    @property
    def unet_module(self) -> torch.nn.Module:
        return self.unet.diffusion_model

    @property
    def text_encoder_module(self) -> torch.nn.Module:
        return self.clip.cond_stage_model

    @property
    def base_dtypes(self) -> dict[str, torch.dtype]:
        """The dtype ComfyUI holds each frozen part in."""
        def weights(module: torch.nn.Module) -> torch.dtype:     # scalars such as logit_scale may stay fp32
            return max(module.parameters(), key=torch.Tensor.numel).dtype
        return {"UNet": self.unet.get_dtype(), "text encoder": weights(self.text_encoder_module),
                "VAE": weights(self.vae.first_stage_model)}

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype ComfyUI runs the UNet in (its weights' dtype, unless it casts them per layer)."""
        return self.unet.manual_cast_dtype or self.unet.get_dtype()

    def enable_gradient_checkpointing(self) -> int:
        """Checkpoint the denoiser's blocks (a UNet's residual and transformer blocks, a DiT's transformer blocks:
        the family's comfy_blocks, matched on the class or a base); returns how many."""
        blocks = set(families.get_family(self.family).comfy_blocks)
        return gradient_checkpointing.checkpoint_blocks(
            self.unet_module, lambda m: any(c.__name__ in blocks for c in type(m).__mro__))

    def release_text_encoder(self) -> None:
        """Move the text encoder off the accelerator (its outputs are cached): an LLM encoder such as Qwen3-4B
        is not kept beside the model being trained. A later encode_prompt loads it again. Through free_memory with
        every other loaded model kept, which every supported ComfyUI has (its unload_model_and_clones, which does the
        same, came after 0.3.75)."""
        import comfy.model_management as mm
        patcher = self.clip.patcher
        others = [loaded for loaded in mm.current_loaded_models
                  if loaded.model is not None and not loaded.model.is_clone(patcher)]
        mm.free_memory(1e30, patcher.load_device, keep_loaded=others)

    def allow_text_encoder_gradients(self) -> None:
        """ComfyUI's CLIP layers add to the residual stream in place (x += attn(ln1(x))); once a LoRA makes
        x require grad, autograd rejects that, because LayerNorm saved x. Feeding each LayerNorm (and T5's own
        T5LayerNorm, whose residual adds are in place too: x += ff(norm(x))) a copy keeps its saved input intact;
        values are unchanged. Its Llama blocks (Qwen3-4B) get an out-of-place forward
        (comfy_adapter/llm_gradients.py). Calling it again changes nothing."""
        if not getattr(self, "_text_encoder_gradients", False):
            self._text_encoder_gradients = True
            allow_llm_gradients(self.text_encoder_module)
        clone_layer_norm_inputs(self.text_encoder_module)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """IMAGE batch (N, H, W, 3) in [0, 1] -> the model's scaled latents (N, C, H/d, W/d), d the family's latent
        downscale."""
        latents = torch.cat([self.vae.encode(images[i:i + 1]) for i in range(images.shape[0])])
        return self.unet.latent_format.process_in(latents.float()).to(self.device)

    def encode_prompt(self, text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(cond, pooled), differentiable through any LoRA attached to the text encoder; pooled is None for a family
        without a pooled vector (Flux.2 Klein, Z-Image)."""
        return encoded(self, self.clip.encode_from_tokens(self.clip.tokenize(text), return_pooled=True,
                                                          return_dict=True))

    def decode_latents(self, latents: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """Model-space latents -> IMAGE (N, H, W, 3) in [0, 1], differentiable (losses on decoded images).

        With `size`, the latent is first resized to size / the family's latent downscale (8, or 16 for Klein), so the
        image comes out at size x size: CLIP losses see 224 px anyway, and decoding at that size costs a fraction of
        the memory of 512 px.
        """
        from einops import rearrange
        if size is not None and latents.shape[-1] * self.downscale != size:
            side = size // self.downscale
            latents = torch.nn.functional.interpolate(latents, size=(side, side), mode="bilinear",
                                                      align_corners=False)
        vae = self.vae.first_stage_model
        dtype = next(vae.parameters()).dtype
        pixels = vae.decode(self.unet.latent_format.process_out(latents).to(dtype))
        return rearrange(self.vae.process_output(pixels.float()), "b c h w -> b h w c")

    def eps(self, x: torch.Tensor, sigma: torch.Tensor, inputs: dict) -> torch.Tensor:
        """The model's noise prediction in the k-diffusion form x = x0 + sigma * eps, for any prediction type."""
        sigma = sigma.to(x).expand(x.shape[0])
        return ddim.eps_from_x0(x, self.unet.apply_model(x, sigma, **inputs), sigma)

    def model_inputs(self, cond: torch.Tensor, pooled: torch.Tensor | None, latents: torch.Tensor) -> dict:
        """The denoiser's conditioning kwargs as ComfyUI's sampler builds them (SDXL adds the `y` vector)."""
        return {k: _on(v.cond, self.device) for k, v in self._row_conds(cond, pooled, latents).items()}

    def sample_sigmas(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """sigmas drawn uniformly from the model's own table of training noise levels (model_sampling.sigmas: the
        discrete DDPM timesteps of SD, the shifted flow times of Flux.2 and Z-Image)."""
        table = self.unet.model_sampling.sigmas
        return table[torch.randint(0, len(table), (count,), generator=generator)].float()

    def diffusion_loss(self, latents: torch.Tensor, cond: torch.Tensor, pooled: torch.Tensor | None,
                       generator: torch.Generator) -> torch.Tensor:
        """The model's own objective (comfy_adapter/objective.py: eps for SD, flow matching for Flux.2 and Z-Image),
        one cond for the whole batch, sigma from the model's training table."""
        n = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        sigma = self.sample_sigmas(n, generator).to(latents)
        predicted, target = self._output_and_target(latents, noise, sigma, cond.expand(n, -1, -1),
                                                    None if pooled is None else pooled.expand(n, -1))
        return torch.nn.functional.mse_loss(predicted.float(), target.float())

    def diffusion_losses(self, latents: torch.Tensor, conds, pooled: torch.Tensor | None,
                         generators: list[torch.Generator]) -> torch.Tensor:
        """The model's objective per item (N,); `conds` holds one row per item, as an (N, L, W) tensor or a list of
        (1, L_i, W) rows. Rows go through the denoiser in as few passes as ComfyUI's sampler would batch them
        (`batched_inputs`): one for SD and for rows of one length.

        Item i's noise and sigma come from generators[i], drawn as `diffusion_loss` draws them for one item, so an
        item's loss does not depend on the batch it is in.
        """
        noise = torch.cat([torch.randn(latents[:1].shape, generator=g) for g in generators]).to(latents)
        sigma = torch.cat([self.sample_sigmas(1, g) for g in generators]).to(latents)
        predicted, target = self._output_and_target(latents, noise, sigma, conds, pooled)
        return (predicted.float() - target.float()).pow(2).flatten(1).mean(1)

    def _output_and_target(self, latents, noise, sigma, conds, pooled) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's raw output at x_t and its training target, in the space model_sampling defines."""
        sampling = self.unet.model_sampling
        noisy = sampling.noise_scaling(sigma, noise, latents)
        passes = self.batched_inputs(conds, pooled, latents)
        order = torch.tensor([i for rows, _ in passes for i in rows])
        denoised = torch.cat([self.unet.apply_model(noisy[rows], sigma[rows], **inputs) for rows, inputs in passes])
        denoised = denoised[torch.argsort(order)] if len(passes) > 1 else denoised
        return (objective.raw_output(sampling, sigma, denoised, noisy),
                objective.training_target(sampling, sigma, noise, latents))

    def batched_inputs(self, conds, pooled: torch.Tensor | None, latents: torch.Tensor) -> list[tuple[list, dict]]:
        """[(row indices, denoiser kwargs)]: each row's conditioning as ComfyUI's sampler builds it (extra_conds),
        joined the way its sampler joins conditionings. Cross-attention contexts of different lengths always join
        (the UNet's CONDCrossAttn repeats each to their least common multiple, which leaves attention unchanged);
        other conditionings (a DiT's text tokens, Z-Image's token count) join only when ComfyUI's can_concat allows,
        so rows it would run apart run apart."""
        from comfy.conds import CONDCrossAttn
        rows = list(conds.split(1)) if torch.is_tensor(conds) else list(conds)
        built = [self._row_conds(cond, None if pooled is None else pooled[i:i + 1], latents[i:i + 1])
                 for i, cond in enumerate(rows)]

        def joins(a: dict, b: dict) -> bool:
            return a.keys() == b.keys() and all(
                (x.cond.shape[2] == b[k].cond.shape[2]) if isinstance(x, CONDCrossAttn) else x.can_concat(b[k])
                for k, x in a.items())

        groups: list[list[int]] = []
        for i, row in enumerate(built):
            group = next((g for g in groups if joins(built[g[0]], row)), None)
            group.append(i) if group is not None else groups.append([i])
        return [(group, {k: _on(c.concat([built[i][k] for i in group[1:]]), self.device)
                         for k, c in built[group[0]].items()}) for group in groups]

    def _row_conds(self, cond: torch.Tensor, pooled: torch.Tensor | None, latents: torch.Tensor) -> dict:
        height, width = latents.shape[-2] * self.downscale, latents.shape[-1] * self.downscale
        return self.unet.extra_conds(cross_attn=cond, pooled_output=pooled, width=width, height=height,
                                     target_width=width, target_height=height, device=self.device, noise=latents)

    @torch.no_grad()
    def sample(self, prompts: list[str], negative: str, size: int, steps: int, seed: int, cfg: float = 7.0) -> torch.Tensor:
        """Preview images (N, H, W, 3) for text prompts, through whatever LoRA is attached."""
        return self.sample_conditioned([self.encode_prompt(p) for p in prompts], negative, size, steps, seed, cfg)

    @torch.no_grad()
    def sample_conditioned(self, conditions: list[tuple[torch.Tensor, torch.Tensor]], negative: str, size: int,
                           steps: int, seed: int, cfg: float = 7.0) -> torch.Tensor:
        """Preview images for (cond, pooled) pairs with ComfyUI's own sampler (euler, normal schedule)."""
        empty = torch.zeros(1, self.unet.latent_format.latent_channels, size // self.downscale, size // self.downscale)
        unconditional = self.encode_prompt(negative)
        return torch.cat([self._sample_image(c, unconditional, empty, steps, seed + i, cfg)
                          for i, c in enumerate(conditions)])

    @torch.no_grad()
    def img2img(self, images: torch.Tensor, prompt: str, negative: str, denoise: float, steps: int, seed: int,
                cfg: float = 7.0) -> torch.Tensor:
        """SDEdit with ComfyUI's own sampler: noise the images to `denoise`, then denoise with the prompt."""
        positive, unconditional = self.encode_prompt(prompt), self.encode_prompt(negative)
        return torch.cat([self._sample_image(positive, unconditional, self.vae.encode(images[i:i + 1]), steps, seed + i,
                                             cfg, denoise) for i in range(images.shape[0])])

    def _sample_image(self, positive: tuple, negative: tuple, latent: torch.Tensor, steps: int, seed: int, cfg: float,
                      denoise: float = 1.0) -> torch.Tensor:
        """One image (1, H, W, 3) by euler on the normal schedule from a VAE-space latent; (cond, pooled) pairs."""
        import comfy.sample
        samples = comfy.sample.sample(self.model, comfy.sample.prepare_noise(latent, seed), steps, cfg, "euler", "normal",
                                      [_conditioning(*positive)], [_conditioning(*negative)],
                                      latent, denoise=denoise, seed=seed, disable_pbar=True)
        return self.vae.decode(samples).float().cpu()


def clone_layer_norm_inputs(module: torch.nn.Module) -> None:
    """Feed every LayerNorm of `module` a copy of its input while gradients are on (see
    ComfyDiffusion.allow_text_encoder_gradients); calling it again changes nothing."""
    if getattr(module, "_stylesmith_layer_norm_copies", False):
        return
    module._stylesmith_layer_norm_copies = True
    for layer in module.modules():
        if isinstance(layer, torch.nn.LayerNorm) or type(layer).__name__ == "T5LayerNorm":
            layer.register_forward_pre_hook(lambda m, args: (args[0].clone(),) + args[1:]
                                            if torch.is_grad_enabled() else None)


def _on(value, device: torch.device):
    """A conditioning value on `device` (ComfyUI's constant conditionings, such as a token count, are plain numbers)."""
    return value.to(device) if torch.is_tensor(value) else value


def _conditioning(cond: torch.Tensor, pooled: torch.Tensor | None) -> list:
    """One CONDITIONING entry, with a pooled output only for families that have one."""
    return [cond, {} if pooled is None else {"pooled_output": pooled}]


def encode_prompt_with_style(diffusion: ComfyDiffusion, text: str, vectors: dict[str, torch.Tensor],
                             placeholder: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(cond, pooled) with the style vectors in place of the placeholder, exactly as the prompt node
    encodes (the same tokenize_with_style, inside the chat template on LLM encoders, the same ComfyUI encode);
    pooled is None for families without a pooled vector. Differentiable w.r.t. the vectors."""
    tokens = tokenize_with_style(diffusion.clip, text, vectors, placeholder)
    return encoded(diffusion, diffusion.clip.encode_from_tokens(tokens, return_pooled=True, return_dict=True))


def encoded(diffusion: ComfyDiffusion, out: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(cond, pooled) of ComfyUI's encode_from_tokens dict on the trainer's device; pooled None where the family has
    no pooled vector."""
    return out["cond"].to(diffusion.device), _on(out.get("pooled_output"), diffusion.device)


def open_checkpoint(checkpoint: Path, device: torch.device, comfyui: Path | None = None,
                    weights: str = "auto") -> ComfyDiffusion:
    """Configure ComfyUI in this process (on the CPU unless `device` is an accelerator, holding the weights in
    `weights`: see host.WEIGHT_DTYPE_OPTIONS), then load `checkpoint`."""
    from .host import import_comfy
    import_comfy(cpu=device.type == "cpu", comfyui=comfyui, weights=weights)
    return ComfyDiffusion(checkpoint, device)
