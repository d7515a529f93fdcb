//! A portrait model: what `profile_train` fits on an orders relation and `user_profile` applies
//! to one customer — the BG/NBD and Gamma-Gamma parameters ([`crate::lifetime`]) and the
//! population's RFM quintiles ([`crate::rfm`]).
//!
//! Rules: BG/NBD needs repeat purchases in the population (else no model); Gamma-Gamma needs two
//! repeat buyers with positive values, and when it cannot be fitted the model still stands with
//! the reason, and the portraits' expected value and CLV are `null` with it.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::control::{Monitor, Threads};
use crate::lifetime::{
    customer_lifetime_value, BgNbd, Customer, FitReport, Fitting, GammaGamma, Summary,
};
use crate::rfm::{RfmEdges, RfmScore, RfmValues};
use crate::taste::TasteClusters;
use crate::{CoreError, Result};

/// The default monthly discount rate of the CLV.
pub const DEFAULT_DISCOUNT_RATE: f64 = 0.01;
/// Months of the CLV.
pub const CLV_MONTHS: u32 = 12;

/// A fitted portrait model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortraitModel {
    pub bgnbd: BgNbd,
    pub bgnbd_fit: FitReport,
    pub gamma_gamma: Option<GammaGamma>,
    pub gamma_gamma_fit: Option<FitReport>,
    /// Why Gamma-Gamma was not fitted.
    pub gamma_gamma_unavailable: Option<String>,
    pub rfm: RfmEdges,
    /// Monthly discount rate of the CLV.
    pub discount_rate: f64,
    /// lifetimes' penalizer used in both fits.
    #[serde(default)]
    pub penalizer: f64,
    /// Taste clusters of a cf model's users, when fitted.
    #[serde(default)]
    pub taste: Option<TasteClusters>,
    /// Why there are no taste clusters.
    #[serde(default)]
    pub taste_unavailable: Option<String>,
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

impl PortraitModel {
    /// Fits the model on the customers' summaries, summing the likelihoods on `threads` and asking
    /// `monitor` between passes (its error stops the fit).
    pub fn fit(
        summaries: &[Summary],
        discount_rate: f64,
        penalizer: f64,
        threads: &Threads,
        monitor: &mut dyn Monitor,
    ) -> Result<PortraitModel> {
        if !(0.0..1.0).contains(&discount_rate) {
            return Err(crate::CoreError::InvalidParameter(format!(
                "the monthly discount rate must be in [0, 1), got {discount_rate}"
            )));
        }
        let customers: Vec<Customer> = summaries.iter().map(|s| s.customer).collect();
        let (bgnbd, bgnbd_fit) = BgNbd::fit_with(
            &customers,
            penalizer,
            Fitting {
                threads,
                monitor: &mut *monitor,
            },
        )?;
        let (gamma_gamma, gamma_gamma_fit, gamma_gamma_unavailable) = match GammaGamma::fit_with(
            &customers,
            penalizer,
            Fitting {
                threads,
                monitor: &mut *monitor,
            },
        ) {
            Ok((g, f)) if g.q > 1.0 => (Some(g), Some(f), None),
            Ok((g, _)) => (
                None,
                None,
                Some(format!(
                    "Gamma-Gamma's q is {:.3} (at most 1): the population's mean spend is \
                         not finite",
                    g.q
                )),
            ),
            Err(CoreError::Cancelled) => return Err(CoreError::Cancelled),
            Err(e) => (None, None, Some(e.to_string())),
        };
        let values: Vec<RfmValues> = summaries
            .iter()
            .map(|s| RfmValues::of(&s.customer, s.total_value))
            .collect();
        Ok(PortraitModel {
            bgnbd,
            bgnbd_fit,
            gamma_gamma,
            gamma_gamma_fit,
            gamma_gamma_unavailable,
            rfm: RfmEdges::fit(&values)?,
            discount_rate,
            penalizer,
            taste: None,
            taste_unavailable: None,
        })
    }

    /// The `lifetime` section of a customer's portrait.
    pub fn lifetime(&self, c: &Customer) -> Value {
        let p_alive = self.bgnbd.p_alive(c);
        let expected = |days: f64| round(self.bgnbd.expected_purchases(days, c), 4);
        let (value, clv) = match &self.gamma_gamma {
            Some(g) => (
                Some(round(g.expected_average_value(c), 2)),
                Some(round(
                    customer_lifetime_value(&self.bgnbd, g, c, CLV_MONTHS, self.discount_rate),
                    2,
                )),
            ),
            None => (None, None),
        };
        json!({
            "p_alive": round(p_alive, 4),
            "churn_risk": round(1.0 - p_alive, 4),
            "expected_purchases": {"days_30": expected(30.0), "days_90": expected(90.0),
                                   "days_365": expected(365.0)},
            "expected_average_value": value,
            "clv_12_months": clv,
            "discount_rate": self.discount_rate,
            "value_unavailable": self.gamma_gamma_unavailable,
            "purchase_days": c.frequency + 1.0,
            "days_since_first": c.age,
            "days_since_last": c.age - c.recency,
        })
    }

    /// The customer's RFM scores and segment.
    pub fn rfm(&self, c: &Customer, total_value: f64) -> RfmScore {
        self.rfm.score(&RfmValues::of(c, total_value))
    }

    /// What `profile_train` reports about the fit.
    pub fn report(&self, summaries: &[Summary]) -> Value {
        let repeat = summaries
            .iter()
            .filter(|s| s.customer.frequency > 0.0)
            .count();
        json!({
            "customers": summaries.len(),
            "repeat_customers": repeat,
            "bgnbd": {
                "r": self.bgnbd.r, "alpha": self.bgnbd.alpha, "a": self.bgnbd.a, "b": self.bgnbd.b,
                "mean_log_likelihood": -self.bgnbd_fit.neg_log_likelihood,
                "iterations": self.bgnbd_fit.iterations,
            },
            "gamma_gamma": self.gamma_gamma.map(|g| json!({
                "p": g.p, "q": g.q, "v": g.v,
                "mean_log_likelihood": self.gamma_gamma_fit.map(|f| -f.neg_log_likelihood),
                "customers": self.gamma_gamma_fit.map(|f| f.customers),
            })),
            "gamma_gamma_unavailable": self.gamma_gamma_unavailable,
            "rfm_quintiles": self.rfm,
            "discount_rate": self.discount_rate,
            "penalizer": self.penalizer,
            "taste_clusters": self.taste.as_ref().map(|t| json!({
                "cf_model": t.cf_model, "cf_version": t.cf_version, "k": t.centroids.len(),
                "names": t.names, "sizes": t.sizes, "silhouettes": t.silhouettes,
            })),
            "taste_clusters_unavailable": self.taste_unavailable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::NoMonitor;
    use crate::lifetime::summarise;

    #[test]
    fn portrait_without_repeat_values_keeps_the_purchase_model() {
        // Repeat buyers whose repeat days all have value 0: no Gamma-Gamma, said so.
        let mut orders = Vec::new();
        for c in 0..50i64 {
            orders.push((c, c % 10, 10.0));
            if c % 3 == 0 {
                orders.push((c, 20 + c % 7, 0.0));
                orders.push((c, 40 + c % 5, 0.0));
            }
        }
        let s = summarise(&orders, 60);
        let m = PortraitModel::fit(
            &s,
            DEFAULT_DISCOUNT_RATE,
            0.0,
            &Threads::current(),
            &mut NoMonitor,
        )
        .unwrap();
        assert!(m.gamma_gamma.is_none());
        assert!(m.gamma_gamma_unavailable.is_some());
        let l = m.lifetime(&s[0].customer);
        assert!(l["clv_12_months"].is_null() && l["value_unavailable"].is_string());
        assert!(l["p_alive"].as_f64().unwrap() > 0.0);
        assert!(PortraitModel::fit(&s, 1.5, 0.0, &Threads::current(), &mut NoMonitor).is_err());
        assert!(PortraitModel::fit(&s, 0.01, -1.0, &Threads::current(), &mut NoMonitor).is_err());
    }
}
