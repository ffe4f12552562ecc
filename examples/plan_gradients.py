# Gradients of a plan, by the implicit function theorem.
#
# For loss 1.947 and 2e12 lifetime inference tokens (Sardana et al.'s Chinchilla constants),
# prints d log N*/d log T (how the optimal model size responds to demand), and the gradient of
# log N* with respect to every coefficient of the law, each beside a central finite difference
# of the solve itself.
import equinox as eqx
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp

import planner


def log_n_star(log_demand, law):
    model = planner.Pipeline(planner.Pretraining(law))
    scenario = planner.Scenario(target_loss=1.947, inference_demand=jnp.exp(log_demand))
    return jnp.log(planner.solve(model, scenario).allocation.n_params)


law = planner.Chinchilla.sardana2024()
log_t = jnp.log(2e12)
value_and_grad = jax.jit(jax.value_and_grad(log_n_star, argnums=(0, 1)))
log_n, (d_log_t, d_law) = value_and_grad(log_t, law)
f = jax.jit(log_n_star)

h = 1e-4
fd = (f(log_t + h, law) - f(log_t - h, law)) / (2 * h)
print(f"N* = {jnp.exp(log_n):.4e}")
print(f"d log N*/d log T = {d_log_t:.6f}  (finite difference {fd:.6f})")
print(f"dN*/dT = {d_log_t * jnp.exp(log_n) / 2e12:.4e} parameters per inference token")
for name in ("E", "A", "B", "alpha", "beta"):
    step = h * getattr(law, name)
    up, down = (eqx.tree_at(lambda l: getattr(l, name), law, getattr(law, name) + s)
                for s in (step, -step))
    fd = (f(log_t, up) - f(log_t, down)) / (2 * step)
    print(f"d log N*/d {name:<5} = {getattr(d_law, name):12.5e}  (finite difference {fd:12.5e})")
