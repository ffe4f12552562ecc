"""`planner.allocate` with objective "dollars": a portfolio of items served by `Deployment`
stages (each its own hardware, prices, prompt and context, devices and memory), sharing one
training-FLOP budget, against two oracles: each item's problem reduced to one variable and
minimised by SciPy, with the budget's price the root of the items' total training FLOP
(`tests/_oracles.py::dollar_portfolio_optimum`), and the whole portfolio as one cvxpy
geometric program (`dollar_gp`; Clarabel ends it `optimal_inaccurate`, its plans 1e-3 apart
in N on items whose dollars are 1e-6 of the total, so only its optimum and price are
compared); and a dollar budget under the loss objective."""

import jax.numpy as jnp
import numpy as np
import pytest
from _oracles import dollar_gp, dollar_item_optimum, dollar_portfolio_optimum
from test_serving import LAW, _model, _scenarios

import planner
from planner import Status

N_ITEMS = 8


@pytest.fixture(scope="module")
def portfolio():
    rows = _scenarios(N_ITEMS, seed=3)
    rows["latency"] = np.full(N_ITEMS, 1e3)  # loose SLOs: memory and the roofline bind
    # a hundredfold demand: serving is most of most items' dollars, so a training budget
    # well below the free plans' use can still be met (at 1x the items' least training is
    # 99.9% of it)
    rows["demand"] = 100 * rows["demand"]
    table = {k: jnp.asarray(v) for k, v in rows.items()}
    model = _model(table)  # per-item hardware: array leaves with the item axis
    items = planner.Scenario(target_loss=table["target_loss"],
                             inference_demand=table["demand"], max_latency=table["latency"])
    listed = [{k: float(v[i]) for k, v in rows.items()} for i in range(N_ITEMS)]
    return model, items, listed


def test_dollars_without_a_budget_are_the_items_own_optima(portfolio):
    model, items, rows = portfolio
    port = planner.allocate(model, items, objective="dollars")
    assert int(port.status) == Status.OPTIMAL
    alone = [dollar_item_optimum(r, LAW) for r in rows]
    # the interior point stops at a barrier parameter of 1e-11: its dollars sit 3e-11 above
    assert float(port.objective) == pytest.approx(sum(a["dollars"] for a in alone), rel=1e-9)
    np.testing.assert_allclose(port.plans.allocation.n_params, [a["n"] for a in alone],
                               rtol=1e-6)
    np.testing.assert_allclose(port.plans.allocation.n_tokens, [a["d"] for a in alone],
                               rtol=1e-6)


@pytest.mark.parametrize("share", [0.95, 0.9])
def test_dollars_under_a_training_budget_match_the_oracles(portfolio, share):
    model, items, rows = portfolio
    free = planner.allocate(model, items, objective="dollars")
    budget = share * float(free.train_flops)
    port = planner.allocate(model, items, {"train_budget": budget}, objective="dollars")
    assert int(port.status) == Status.OPTIMAL
    assert float(port.usage["train_budget"]) == pytest.approx(budget, rel=1e-9)
    price = float(port.prices["train_budget"])
    dual = dollar_portfolio_optimum(rows, LAW, budget)
    # the oracle's plans are exact to about 1e-8 in N, so its training FLOP are, and its
    # dollars at the budget are to that times the budget's value (measured 1.35e-9 apart)
    assert float(port.objective) == pytest.approx(dual["dollars"], rel=1e-8)
    assert price == pytest.approx(dual["price"], rel=1e-6)
    np.testing.assert_allclose(port.plans.allocation.n_params, dual["n"], rtol=1e-6)
    np.testing.assert_allclose(port.plans.allocation.n_tokens, dual["d"], rtol=1e-6)
    gp = dollar_gp(rows, LAW, train_budget=budget)
    assert float(port.objective) == pytest.approx(gp["dollars"], rel=1e-6)
    assert price == pytest.approx(gp["price"], rel=1e-4)
    # the price is the dollars one more FLOP of training saves: central differences
    h = 1e-4 * budget
    up = planner.allocate(model, items, {"train_budget": budget + h}, objective="dollars")
    down = planner.allocate(model, items, {"train_budget": budget - h}, objective="dollars")
    central = -(float(up.objective) - float(down.objective)) / (2 * h)
    assert price == pytest.approx(central, rel=1e-5)


def test_a_dollar_budget_is_a_budget(portfolio):
    """The loss objective under a budget in dollars: the budget is spent exactly, and each
    item is dollar-optimal at the loss it reaches (the programs of the items at those targets
    spend exactly the budget)."""
    model, items, rows = portfolio
    free = planner.allocate(model, items, objective="dollars")
    budget = 1.5 * float(free.objective)
    port = planner.allocate(model, items, {"dollar_budget": budget}, objective="loss")
    assert int(port.status) == Status.OPTIMAL
    assert float(port.usage["dollar_budget"]) == pytest.approx(budget, rel=1e-9)
    assert np.all(np.asarray(port.plans.outcome.loss) < [r["target_loss"] for r in rows])
    reached = [dict(r, target_loss=float(port.plans.outcome.loss[i]))
               for i, r in enumerate(rows)]
    least = sum(dollar_item_optimum(r, LAW)["dollars"] for r in reached)
    assert least == pytest.approx(budget, rel=1e-9)
    with pytest.raises(ValueError, match="needs a budget on training"):
        planner.allocate(model, items, {"inference_budget": 1e30}, objective="loss")
