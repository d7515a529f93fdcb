//! Customer lifetime models ("buy till you die"): BG/NBD for whether a customer is still active
//! and how often they will buy (Fader, Hardie and Lee 2005), Gamma-Gamma for how much they spend
//! per purchase (Fader, Hardie and Lee 2005b; Hardie's note 025), and the customer lifetime
//! value that combines them. Every formula is the one of `lifetimes` 0.11.3
//! (`BetaGeoFitter`, `GammaGammaFitter`, `utils.summary_data_from_transaction_data` with
//! `freq='D'`, `utils._customer_lifetime_value`), checked to 1e-4 by
//! `tests/lifetime_reference.rs` against `scripts/lifetime_reference.py`.
//!
//! A customer is summarised by ([`summarise`]): `frequency` x = distinct purchase days − 1,
//! `recency` tₓ = days from the first to the last purchase day, `T` = days from the first purchase
//! day to the observation day, `monetary` m = mean value of the repeat purchase days (a day's
//! value is the sum of its orders; 0 without repeat purchases).
//!
//! Fitting maximises the mean log-likelihood over the log-parameters with L-BFGS (argmin, More–
//! Thuente line search) and an analytic gradient, from lifetimes' starting point (every
//! log-parameter 0.1) and, for BG/NBD, on lifetimes' time scale (ages divided by the largest),
//! to a gradient norm of 1e-9.

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use std::cell::RefCell;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use statrs::function::gamma::{digamma, ln_gamma};

use crate::control::{Monitor, NoMonitor, Progress, Threads};
use crate::{CoreError, Result};

/// One customer's purchase summary (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    /// Repeat purchase days.
    pub frequency: f64,
    /// Days from the first to the last purchase day.
    pub recency: f64,
    /// Days from the first purchase day to the observation day.
    pub age: f64,
    /// Mean value of the repeat purchase days (0 without one).
    pub monetary: f64,
}

/// A customer's summary with its id and the total value of all purchase days.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub customer_id: i64,
    pub customer: Customer,
    pub total_value: f64,
}

/// Summaries of customers from their purchase days: `(customer, day, value)` with `day` an
/// integer day number (e.g. days since 1970) and `as_of` the observation day. Orders after
/// `as_of` are ignored; orders on one day count as one purchase of their total value. Returns
/// the customers in order of their ids.
pub fn summarise(orders: &[(i64, i64, f64)], as_of: i64) -> Vec<Summary> {
    let mut days: Vec<(i64, i64, f64)> = orders.iter().filter(|o| o.1 <= as_of).copied().collect();
    days.sort_by_key(|&(c, d, _)| (c, d));
    let mut out: Vec<Summary> = Vec::new();
    let mut i = 0;
    while i < days.len() {
        let customer = days[i].0;
        let first = days[i].1;
        let (mut last, mut distinct, mut repeat_sum, mut total) = (first, 0u64, 0.0, 0.0);
        while i < days.len() && days[i].0 == customer {
            let day = days[i].1;
            let mut value = 0.0;
            while i < days.len() && days[i].0 == customer && days[i].1 == day {
                value += days[i].2;
                i += 1;
            }
            distinct += 1;
            total += value;
            if day != first {
                repeat_sum += value;
            }
            last = day;
        }
        let frequency = (distinct - 1) as f64;
        out.push(Summary {
            customer_id: customer,
            customer: Customer {
                frequency,
                recency: (last - first) as f64,
                age: (as_of - first) as f64,
                monetary: if frequency > 0.0 {
                    repeat_sum / frequency
                } else {
                    0.0
                },
            },
            total_value: total,
        });
    }
    out
}

/// BG/NBD parameters: purchase rates are Gamma(r, α) across customers, the drop-out probability
/// after each purchase is Beta(a, b).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Gamma-Gamma parameters: a customer's mean spend per purchase is Gamma(q, ν) distributed in its
/// scale, spends around it Gamma(p, ·).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

/// How a fit went.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitReport {
    /// Mean negative log-likelihood at the optimum.
    pub neg_log_likelihood: f64,
    /// L-BFGS iterations.
    pub iterations: u64,
    /// Norm of the gradient (in log-parameters) at the end.
    pub gradient_norm: f64,
    /// Customers used.
    pub customers: usize,
}

/// The per-customer log-likelihood of BG/NBD and its gradient in (r, α, a, b).
fn bgnbd_term(p: &[f64; 4], c: &Customer) -> (f64, [f64; 4]) {
    let [r, alpha, a, b] = *p;
    let (x, tx, t) = (c.frequency, c.recency, c.age);
    let a1 = ln_gamma(r + x) - ln_gamma(r) + r * alpha.ln();
    let a2 = ln_gamma(a + b) + ln_gamma(b + x) - ln_gamma(b) - ln_gamma(a + b + x);
    let a3 = -(r + x) * (alpha + t).ln();
    let mut g = [
        digamma(r + x) - digamma(r) + alpha.ln(),
        r / alpha,
        digamma(a + b) - digamma(a + b + x),
        digamma(a + b) + digamma(b + x) - digamma(b) - digamma(a + b + x),
    ];
    let d3 = [-(alpha + t).ln(), -(r + x) / (alpha + t), 0.0, 0.0];
    if x > 0.0 {
        let a4 = a.ln() - (b + x - 1.0).ln() - (r + x) * (tx + alpha).ln();
        let m = a3.max(a4);
        let (e3, e4) = ((a3 - m).exp(), (a4 - m).exp());
        let (w3, w4) = (e3 / (e3 + e4), e4 / (e3 + e4));
        let d4 = [
            -(tx + alpha).ln(),
            -(r + x) / (tx + alpha),
            1.0 / a,
            -1.0 / (b + x - 1.0),
        ];
        for k in 0..4 {
            g[k] += w3 * d3[k] + w4 * d4[k];
        }
        (a1 + a2 + m + (e3 + e4).ln(), g)
    } else {
        for k in 0..4 {
            g[k] += d3[k];
        }
        (a1 + a2 + a3, g)
    }
}

/// The per-customer log-likelihood of Gamma-Gamma and its gradient in (p, q, v).
fn gamma_gamma_term(p: &[f64; 3], c: &Customer) -> (f64, [f64; 3]) {
    let [pp, q, v] = *p;
    let (x, m) = (c.frequency, c.monetary);
    let px = pp * x;
    let ll = ln_gamma(px + q) - ln_gamma(px) - ln_gamma(q)
        + q * v.ln()
        + (px - 1.0) * m.ln()
        + px * x.ln()
        - (px + q) * (x * m + v).ln();
    let g = [
        x * digamma(px + q) - x * digamma(px) + x * m.ln() + x * x.ln() - x * (x * m + v).ln(),
        digamma(px + q) - digamma(q) + v.ln() - (x * m + v).ln(),
        q / v - (px + q) / (x * m + v),
    ];
    (ll, g)
}

/// Minus the mean log-likelihood over log-parameters plus lifetimes' penalty
/// `penalizer · Σ θ²` on the parameters, for argmin.
struct Objective<'a, const N: usize> {
    customers: &'a [Customer],
    term: fn(&[f64; N], &Customer) -> (f64, [f64; N]),
    penalizer: f64,
    threads: &'a Threads,
    monitor: RefCell<&'a mut dyn Monitor>,
    /// The monitor's error, kept because argmin turns an error inside the line search into an
    /// ordinary termination.
    stopped: &'a RefCell<Option<CoreError>>,
    /// The last point with its cost and gradient: argmin asks for both of one point separately,
    /// and one pass over the customers gives both.
    last: RefCell<Option<Evaluated>>,
}

/// A point of the parameter space with its cost and gradient.
type Evaluated = (Vec<f64>, f64, Vec<f64>);

/// Customers per chunk of an evaluation: the chunks are summed in their order, so the result
/// does not depend on the number of threads.
const CHUNK: usize = 4096;

impl<'a, const N: usize> Objective<'a, N> {
    fn new<'f: 'a>(
        customers: &'a [Customer],
        term: fn(&[f64; N], &Customer) -> (f64, [f64; N]),
        penalizer: f64,
        how: Fitting<'f>,
        stopped: &'a RefCell<Option<CoreError>>,
    ) -> Self {
        Objective {
            customers,
            term,
            penalizer,
            threads: how.threads,
            monitor: RefCell::new(how.monitor),
            stopped,
            last: RefCell::new(None),
        }
    }

    fn evaluate(&self, log_params: &[f64]) -> (f64, Vec<f64>) {
        if let Some((p, c, g)) = &*self.last.borrow() {
            if p.as_slice() == log_params {
                return (*c, g.clone());
            }
        }
        let mut p = [0.0; N];
        for (k, v) in p.iter_mut().enumerate() {
            *v = log_params[k].exp();
        }
        let term = self.term;
        let partial = |chunk: &[Customer]| {
            let (mut ll, mut g) = (0.0, [0.0; N]);
            for c in chunk {
                let (l, d) = term(&p, c);
                ll += l;
                for k in 0..N {
                    g[k] += d[k];
                }
            }
            (ll, g)
        };
        let parts: Vec<(f64, [f64; N])> = self
            .threads
            .run(|| self.customers.par_chunks(CHUNK).map(partial).collect());
        let (mut ll, mut g) = (0.0, [0.0; N]);
        for (l, d) in parts {
            ll += l;
            for k in 0..N {
                g[k] += d[k];
            }
        }
        let n = self.customers.len() as f64;
        let penalty: f64 = self.penalizer * p.iter().map(|x| x * x).sum::<f64>();
        // d/d(log θ) = θ · d/dθ; minimising the negative mean plus the penalty.
        let grad: Vec<f64> = (0..N)
            .map(|k| -g[k] * p[k] / n + 2.0 * self.penalizer * p[k] * p[k])
            .collect();
        let cost = -ll / n + penalty;
        *self.last.borrow_mut() = Some((log_params.to_vec(), cost, grad.clone()));
        (cost, grad)
    }

    /// Asks the monitor whether to go on (every evaluation: a pass over the customers).
    fn go_on(&self) -> std::result::Result<(), argmin::core::Error> {
        let progress = Progress::epoch("likelihood", 0, 0, None);
        if let Err(e) = self.monitor.borrow_mut().step(&progress) {
            let message = e.to_string();
            *self.stopped.borrow_mut() = Some(e);
            return Err(argmin::core::Error::msg(message));
        }
        Ok(())
    }
}

impl<const N: usize> CostFunction for Objective<'_, N> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        self.go_on()?;
        let (c, _) = self.evaluate(p);
        if c.is_finite() {
            Ok(c)
        } else {
            // Outside the likelihood's domain: an infinite cost makes the line search step back.
            Ok(f64::INFINITY)
        }
    }
}

impl<const N: usize> Gradient for Objective<'_, N> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        self.go_on()?;
        Ok(self.evaluate(p).1)
    }
}

/// How a fit runs: the threads that sum the likelihood over the customers, and the monitor asked
/// between passes (its error stops the fit: cancel, statement_timeout).
pub struct Fitting<'a> {
    pub threads: &'a Threads,
    pub monitor: &'a mut dyn Monitor,
}

/// Runs `f` with rayon's current threads and no monitor (the fits' plain entry points).
fn unwatched<T>(f: impl FnOnce(Fitting<'_>) -> T) -> T {
    f(Fitting {
        threads: &Threads::current(),
        monitor: &mut NoMonitor,
    })
}

/// Maximum-likelihood fit over log-parameters from `start`.
fn fit<const N: usize>(
    customers: &[Customer],
    term: fn(&[f64; N], &Customer) -> (f64, [f64; N]),
    penalizer: f64,
    what: &str,
    how: Fitting<'_>,
) -> Result<([f64; N], FitReport)> {
    if !(penalizer >= 0.0 && penalizer.is_finite()) {
        return Err(CoreError::InvalidParameter(format!(
            "the penalizer must be a non-negative number, got {penalizer}"
        )));
    }
    let threads = how.threads;
    let stopped = RefCell::new(None);
    let problem = Objective::new(customers, term, penalizer, how, &stopped);
    let err = |e: argmin::core::Error| {
        CoreError::InvalidData(format!("the {what} fit failed to converge: {e}"))
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-9)
        .and_then(|s| s.with_tolerance_cost(0.0))
        .map_err(err)?;
    let result = Executor::new(problem, solver)
        .configure(|s| s.param(vec![0.1; N]).max_iters(1000))
        .timer(false)
        .run();
    if let Some(e) = stopped.replace(None) {
        return Err(e);
    }
    let result = result.map_err(err)?;
    let best =
        result.state().get_best_param().cloned().ok_or_else(|| {
            CoreError::InvalidData(format!("the {what} fit returned no parameters"))
        })?;
    let iterations = result.state().get_iter();
    // argmin does not hand its objective back, so a new one evaluates the best point.
    let unwatched = Fitting {
        threads,
        monitor: &mut NoMonitor,
    };
    let (cost, grad) =
        Objective::new(customers, term, penalizer, unwatched, &stopped).evaluate(&best);
    let gradient_norm = grad.iter().map(|g| g * g).sum::<f64>().sqrt();
    let mut params = [0.0; N];
    for (k, v) in params.iter_mut().enumerate() {
        *v = best[k].exp();
    }
    if !cost.is_finite() || params.iter().any(|p| !p.is_finite() || *p <= 0.0) {
        return Err(CoreError::InvalidData(format!(
            "the {what} fit diverged (parameters {params:?})"
        )));
    }
    if gradient_norm > 1e-5 {
        return Err(CoreError::InvalidData(format!(
            "the {what} fit did not converge: the gradient's norm is {gradient_norm:.2e} after \
             {} iterations (the data may not identify the model; a penalizer such as 0.001 \
             regularises it, as in lifetimes)",
            iterations
        )));
    }
    Ok((
        params,
        FitReport {
            neg_log_likelihood: cost,
            iterations,
            gradient_norm,
            customers: customers.len(),
        },
    ))
}

fn check(customers: &[Customer]) -> Result<()> {
    for c in customers {
        let ok = c.frequency >= 0.0
            && c.frequency.fract() == 0.0
            && c.recency >= 0.0
            && c.age >= c.recency
            && c.age.is_finite()
            && (c.frequency > 0.0 || c.recency == 0.0);
        if !ok {
            return Err(CoreError::InvalidData(format!(
                "a customer summary is inconsistent: frequency {}, recency {}, age {}",
                c.frequency, c.recency, c.age
            )));
        }
    }
    Ok(())
}

impl BgNbd {
    /// Fits BG/NBD to the customers (every customer, repeat buyer or not). Needs at least one
    /// repeat purchase and one customer with a positive age.
    pub fn fit(customers: &[Customer]) -> Result<(BgNbd, FitReport)> {
        Self::fit_penalized(customers, 0.0)
    }

    /// [`BgNbd::fit`] with lifetimes' `penalizer_coef`: `penalizer · (r² + α² + a² + b²)` added
    /// to the mean negative log-likelihood (α on the scaled time axis, as lifetimes).
    pub fn fit_penalized(customers: &[Customer], penalizer: f64) -> Result<(BgNbd, FitReport)> {
        unwatched(|how| Self::fit_with(customers, penalizer, how))
    }

    /// [`BgNbd::fit_penalized`] on `how`'s threads, asking its monitor between passes.
    pub fn fit_with(
        customers: &[Customer],
        penalizer: f64,
        how: Fitting<'_>,
    ) -> Result<(BgNbd, FitReport)> {
        check(customers)?;
        if !customers.iter().any(|c| c.frequency > 0.0) {
            return Err(CoreError::InvalidData(
                "BG/NBD needs customers with repeat purchases; every customer bought on one day"
                    .into(),
            ));
        }
        let max_age = customers.iter().map(|c| c.age).fold(0.0f64, f64::max);
        if max_age <= 0.0 {
            return Err(CoreError::InvalidData(
                "BG/NBD needs customers older than one day".into(),
            ));
        }
        // lifetimes' time scale: ages and recencies divided by the largest age.
        let scale = 1.0 / max_age;
        let scaled: Vec<Customer> = customers
            .iter()
            .map(|c| Customer {
                recency: c.recency * scale,
                age: c.age * scale,
                ..*c
            })
            .collect();
        let ([r, alpha, a, b], report) = fit(&scaled, bgnbd_term, penalizer, "BG/NBD", how)?;
        Ok((
            BgNbd {
                r,
                alpha: alpha / scale,
                a,
                b,
            },
            report,
        ))
    }

    /// Mean log-likelihood of the customers under these parameters.
    pub fn log_likelihood(&self, customers: &[Customer]) -> f64 {
        let p = [self.r, self.alpha, self.a, self.b];
        customers.iter().map(|c| bgnbd_term(&p, c).0).sum::<f64>() / customers.len() as f64
    }

    /// Probability that the customer is still active: 1 without repeat purchases, else
    /// `1/(1 + a/(b + x − 1)·((α + T)/(α + tₓ))^(r + x))`.
    pub fn p_alive(&self, c: &Customer) -> f64 {
        if c.frequency == 0.0 {
            return 1.0;
        }
        let (x, BgNbd { r, alpha, a, b }) = (c.frequency, *self);
        let log_div =
            (r + x) * ((alpha + c.age) / (alpha + c.recency)).ln() + (a / (b + x - 1.0)).ln();
        1.0 / (1.0 + log_div.exp())
    }

    /// Expected purchases in the next `t` days (Fader, Hardie and Lee 2005, eq. 10):
    /// `(a + b + x − 1)/(a − 1) · [1 − ((α + T)/(α + T + t))^(r + x) ₂F₁(r + x, b + x; a + b + x − 1;
    /// t/(α + T + t))] / (1 + [x > 0] a/(b + x − 1) ((α + T)/(α + tₓ))^(r + x))`.
    pub fn expected_purchases(&self, t: f64, c: &Customer) -> f64 {
        let (x, BgNbd { r, alpha, a, b }) = (c.frequency, *self);
        let (ha, hb, hc) = (r + x, b + x, a + b + x - 1.0);
        let z = t / (alpha + c.age + t);
        let ln_hyp = ln_hyp2f1(ha, hb, hc, z);
        let first = (a + b + x - 1.0) / (a - 1.0);
        let second = 1.0 - (ln_hyp + (r + x) * ((alpha + c.age) / (alpha + t + c.age)).ln()).exp();
        let denominator = 1.0
            + if x > 0.0 {
                (a / (b + x - 1.0)) * ((alpha + c.age) / (alpha + c.recency)).powf(r + x)
            } else {
                0.0
            };
        first * second / denominator
    }
}

/// `ln ₂F₁(a, b; c; z)` for `0 ≤ z < 1` by its power series, switching to Euler's
/// transformation `₂F₁(a, b; c; z) = (1 − z)^(c − a − b) ₂F₁(c − a, c − b; c; z)` when that
/// series' terms shrink faster (as lifetimes falls back to it when the first overflows).
fn ln_hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let series = |a: f64, b: f64| {
        let (mut term, mut sum) = (1.0f64, 1.0f64);
        for k in 0..100_000 {
            let k = k as f64;
            term *= (a + k) * (b + k) / ((c + k) * (k + 1.0)) * z;
            sum += term;
            if term.abs() <= 1e-17 * sum.abs() {
                break;
            }
        }
        sum
    };
    let direct = series(a, b);
    if direct.is_finite() && direct > 0.0 {
        direct.ln()
    } else {
        series(c - a, c - b).ln() + (c - a - b) * (1.0 - z).ln()
    }
}

impl GammaGamma {
    /// Fits Gamma-Gamma to the repeat buyers (frequency > 0 and a positive monetary value).
    /// Needs at least two of them.
    pub fn fit(customers: &[Customer]) -> Result<(GammaGamma, FitReport)> {
        Self::fit_penalized(customers, 0.0)
    }

    /// [`GammaGamma::fit`] with lifetimes' `penalizer_coef` (`penalizer · (p² + q² + v²)`).
    pub fn fit_penalized(
        customers: &[Customer],
        penalizer: f64,
    ) -> Result<(GammaGamma, FitReport)> {
        unwatched(|how| Self::fit_with(customers, penalizer, how))
    }

    /// [`GammaGamma::fit_penalized`] on `how`'s threads, asking its monitor between passes.
    pub fn fit_with(
        customers: &[Customer],
        penalizer: f64,
        how: Fitting<'_>,
    ) -> Result<(GammaGamma, FitReport)> {
        check(customers)?;
        let repeat: Vec<Customer> = customers
            .iter()
            .filter(|c| c.frequency > 0.0 && c.monetary > 0.0)
            .copied()
            .collect();
        if repeat.len() < 2 {
            return Err(CoreError::InvalidData(format!(
                "Gamma-Gamma needs at least two customers with repeat purchases of positive \
                 value, got {}",
                repeat.len()
            )));
        }
        let ([p, q, v], report) = fit(&repeat, gamma_gamma_term, penalizer, "Gamma-Gamma", how)?;
        Ok((GammaGamma { p, q, v }, report))
    }

    /// Expected mean value of the customer's future purchases:
    /// `(1 − w)·νp/(q − 1) + w·m` with `w = px/(px + q − 1)`.
    pub fn expected_average_value(&self, c: &Customer) -> f64 {
        let GammaGamma { p, q, v } = *self;
        let w = p * c.frequency / (p * c.frequency + q - 1.0);
        (1.0 - w) * v * p / (q - 1.0) + w * c.monetary
    }
}

/// Customer lifetime value over `months` months (of 30 days) at a monthly `discount_rate`
/// (lifetimes' `customer_lifetime_value` with `freq='D'`): Σᵢ value·(E[purchases in 30i days] −
/// E[purchases in 30(i − 1) days])/(1 + d)^i, with value the Gamma-Gamma expected average value.
pub fn customer_lifetime_value(
    bgnbd: &BgNbd,
    gamma_gamma: &GammaGamma,
    c: &Customer,
    months: u32,
    discount_rate: f64,
) -> f64 {
    const DAYS: f64 = 30.0;
    let value = gamma_gamma.expected_average_value(c);
    let mut clv = 0.0;
    let mut before = 0.0;
    for i in 1..=months {
        let upto = bgnbd.expected_purchases(f64::from(i) * DAYS, c);
        clv += value * (upto - before) / (1.0 + discount_rate).powi(i as i32);
        before = upto;
    }
    clv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetime_summary_follows_lifetimes_definitions() {
        // Customer 1: days 10, 10 (same day, summed), 15, 30 → frequency 2, recency 20, age
        // 40 - 10 = 30, monetary mean of the repeat days (15: 7, 30: 9) = 8.
        let orders = [
            (1, 10, 2.0),
            (1, 10, 3.0),
            (1, 15, 7.0),
            (1, 30, 9.0),
            (2, 35, 4.0),
            (2, 50, 1.0), // after as_of
        ];
        let s = summarise(&orders, 40);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].total_value, 21.0);
        assert_eq!(
            s[0].customer,
            Customer {
                frequency: 2.0,
                recency: 20.0,
                age: 30.0,
                monetary: 8.0
            }
        );
        assert_eq!(
            s[1].customer,
            Customer {
                frequency: 0.0,
                recency: 0.0,
                age: 5.0,
                monetary: 0.0
            }
        );
    }

    #[test]
    fn lifetime_gradients_match_finite_differences() {
        let c = Customer {
            frequency: 3.0,
            recency: 20.0,
            age: 35.0,
            monetary: 12.5,
        };
        let p = [0.7, 4.0, 0.9, 2.5];
        let (_, g) = bgnbd_term(&p, &c);
        for k in 0..4 {
            let mut hi = p;
            let mut lo = p;
            hi[k] += 1e-6;
            lo[k] -= 1e-6;
            let fd = (bgnbd_term(&hi, &c).0 - bgnbd_term(&lo, &c).0) / 2e-6;
            assert!(
                (fd - g[k]).abs() < 1e-6 * fd.abs().max(1.0),
                "BG/NBD {k}: {fd} vs {}",
                g[k]
            );
        }
        let p = [6.0, 3.7, 15.0];
        let (_, g) = gamma_gamma_term(&p, &c);
        for k in 0..3 {
            let mut hi = p;
            let mut lo = p;
            hi[k] += 1e-6;
            lo[k] -= 1e-6;
            let fd = (gamma_gamma_term(&hi, &c).0 - gamma_gamma_term(&lo, &c).0) / 2e-6;
            assert!(
                (fd - g[k]).abs() < 1e-6 * fd.abs().max(1.0),
                "GG {k}: {fd} vs {}",
                g[k]
            );
        }
    }

    #[test]
    fn a_fit_stops_when_its_monitor_says_so() {
        struct StopAfter(usize);
        impl Monitor for StopAfter {
            fn step(&mut self, _: &Progress) -> Result<()> {
                if self.0 == 0 {
                    return Err(CoreError::Cancelled);
                }
                self.0 -= 1;
                Ok(())
            }
        }
        let customers: Vec<Customer> = (0..600)
            .map(|n| {
                let age = 50.0 + (n * 37 % 300) as f64;
                let frequency = (n * 7 % 6) as f64;
                Customer {
                    frequency,
                    recency: if frequency == 0.0 {
                        0.0
                    } else {
                        age * ((n * 13 % 10) + 1) as f64 / 11.0
                    },
                    age,
                    monetary: if frequency == 0.0 {
                        0.0
                    } else {
                        10.0 + (n * 17 % 90) as f64
                    },
                }
            })
            .collect();
        let threads = Threads::current();
        let stopped = BgNbd::fit_with(
            &customers,
            0.0,
            Fitting {
                threads: &threads,
                monitor: &mut StopAfter(3),
            },
        );
        assert!(matches!(stopped, Err(CoreError::Cancelled)), "{stopped:?}");
        let stopped = GammaGamma::fit_with(
            &customers,
            0.0,
            Fitting {
                threads: &threads,
                monitor: &mut StopAfter(0),
            },
        );
        assert!(matches!(stopped, Err(CoreError::Cancelled)), "{stopped:?}");
        // Without a stop, the same fit runs to the same answer on 1 or 2 threads.
        let one = BgNbd::fit_with(
            &customers,
            0.01,
            Fitting {
                threads: &Threads::new(1).unwrap(),
                monitor: &mut NoMonitor,
            },
        )
        .unwrap();
        let two = BgNbd::fit_with(
            &customers,
            0.01,
            Fitting {
                threads: &Threads::new(2).unwrap(),
                monitor: &mut NoMonitor,
            },
        )
        .unwrap();
        assert_eq!(one.0, two.0);
    }

    #[test]
    fn lifetime_refuses_data_without_repeat_purchases() {
        let one = Customer {
            frequency: 0.0,
            recency: 0.0,
            age: 10.0,
            monetary: 0.0,
        };
        assert!(BgNbd::fit(&[one, one]).is_err());
        assert!(GammaGamma::fit(&[one, one]).is_err());
    }
}
