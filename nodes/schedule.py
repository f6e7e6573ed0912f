"""SplitSigmasAtTimestep: cut a σ schedule at the noise level of a training timestep.

The host's ``SplitSigmas`` cuts at a step index and ``SplitSigmasDenoise`` at a fraction of the steps, so
the noise level at the cut moves with the scheduler and the step count. This node cuts at the σ of a
discrete timestep of the model's 1000-level schedule, the unit refiners are trained in ("the first 200 of
1000 noise levels"), inserting that σ into the schedule when no step lands on it.
"""

from comfy_api.latest import io

from ..kernels.schedule import sigma_at_timestep, split_sigmas_at
from .common import CATEGORY, sigma_table


class SplitSigmasAtTimestep(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="StepwiseSplitSigmasAtTimestep",
            display_name="Split Sigmas at Timestep",
            category=CATEGORY,
            description=(
                "Splits a σ schedule at the noise level of timestep t of the model's 1000-level training "
                "schedule (t=999 noisiest, t=0 cleanest). high_sigmas runs down to that level and low_sigmas "
                "from it to the end; the level is inserted when no step lands on it, so the split is at the "
                "same noise level under every scheduler and step count."
            ),
            inputs=[
                io.Model.Input("model", tooltip="Model whose noise schedule (model_sampling) defines the timesteps."),
                io.Sigmas.Input("sigmas", tooltip="Descending σ schedule, e.g. from BasicScheduler."),
                io.Int.Input(
                    "timestep",
                    default=250,
                    min=0,
                    max=999,
                    tooltip="Discrete timestep to split at, 0–999 of the 1000-level training schedule (999 = pure "
                            "noise); 250 is the usual shape/detail boundary.",
                ),
            ],
            outputs=[
                io.Sigmas.Output("high_sigmas", display_name="high_sigmas",
                                 tooltip="The noisy part, ending at the timestep's σ."),
                io.Sigmas.Output("low_sigmas", display_name="low_sigmas",
                                 tooltip="The clean part, starting at the timestep's σ."),
                io.Float.Output("sigma", display_name="sigma", tooltip="σ of the timestep in this model's schedule."),
            ],
        )

    @classmethod
    def execute(cls, model, sigmas, timestep) -> io.NodeOutput:
        sigma = sigma_at_timestep(sigma_table(model), timestep)
        high, low = split_sigmas_at(sigmas.cpu(), sigma)
        return io.NodeOutput(high, low, sigma)
