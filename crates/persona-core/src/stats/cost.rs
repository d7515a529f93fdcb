//! Which part of a campaign's cost each arm carries, for its ROI and ROAS.

use std::collections::HashMap;

use super::ArmAggregate;

/// How a campaign's cost is known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CampaignCost<'a> {
    /// Nothing is known: no arm gets a cost.
    Unknown,
    /// One cost for the whole campaign (`persona.campaigns.cost`).
    Total(f64),
    /// Each arm's own cost (`persona.campaigns.arm_costs`), which takes precedence over a total.
    PerArm(&'a HashMap<String, f64>),
}

impl<'a> CampaignCost<'a> {
    /// The cost as the campaign's row gives it: per-arm costs when set, else the total.
    pub fn from_columns(arm_costs: Option<&'a HashMap<String, f64>>, total: Option<f64>) -> Self {
        match (arm_costs, total) {
            (Some(per_arm), _) => CampaignCost::PerArm(per_arm),
            (None, Some(t)) => CampaignCost::Total(t),
            (None, None) => CampaignCost::Unknown,
        }
    }
}

/// Sets each arm's `cost`. Per-arm costs are taken as given: an arm they do not list costs 0
/// when it is the control and is unknown (`None`, so no ROI) otherwise. A total is carried by
/// the treated arms in proportion to their exposed users; the control costs 0, and with no
/// exposed treated user nothing is attributed (every arm 0). Arms with an empty name (events
/// without an arm) are left unknown in both cases.
pub fn attribute_costs(arms: &mut [ArmAggregate], control: &str, cost: CampaignCost<'_>) {
    let named = |a: &&mut ArmAggregate| !a.arm.is_empty();
    match cost {
        CampaignCost::Unknown => {}
        CampaignCost::PerArm(costs) => {
            for a in arms.iter_mut().filter(named) {
                a.cost = costs
                    .get(&a.arm)
                    .copied()
                    .or((a.arm == control).then_some(0.0));
            }
        }
        CampaignCost::Total(total) => {
            let treated: u64 = arms
                .iter()
                .filter(|a| a.arm != control && !a.arm.is_empty())
                .map(|a| a.users_exposed)
                .sum();
            for a in arms.iter_mut().filter(named) {
                a.cost = Some(if a.arm == control || treated == 0 {
                    0.0
                } else {
                    total * a.users_exposed as f64 / treated as f64
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arm(name: &str, users_exposed: u64) -> ArmAggregate {
        ArmAggregate {
            arm: name.into(),
            users_exposed,
            exposures: users_exposed,
            clicks: 0,
            users_clicked: 0,
            conversions: 0,
            users_converted: 0,
            revenue: 0.0,
            revenue_sumsq: 0.0,
            cost: None,
            ctr_moments: None,
            ..Default::default()
        }
    }

    fn costs(arms: &[ArmAggregate]) -> Vec<Option<f64>> {
        arms.iter().map(|a| a.cost).collect()
    }

    #[test]
    fn a_total_is_split_over_treated_arms_by_exposed_users() {
        let mut arms = vec![
            arm("control", 500),
            arm("email", 300),
            arm("push", 100),
            arm("", 7),
        ];
        attribute_costs(&mut arms, "control", CampaignCost::Total(1000.0));
        assert_eq!(
            costs(&arms),
            vec![Some(0.0), Some(750.0), Some(250.0), None]
        );
    }

    #[test]
    fn a_total_without_treated_users_is_attributed_to_no_arm() {
        let mut arms = vec![arm("control", 500), arm("email", 0)];
        attribute_costs(&mut arms, "control", CampaignCost::Total(1000.0));
        assert_eq!(costs(&arms), vec![Some(0.0), Some(0.0)]);
    }

    #[test]
    fn per_arm_costs_are_taken_as_given_and_unlisted_arms_are_unknown() {
        let given: HashMap<String, f64> =
            [("email".to_string(), 800.0), ("push".to_string(), 300.0)].into();
        let mut arms = vec![
            arm("control", 500),
            arm("email", 300),
            arm("push", 100),
            arm("sms", 50),
        ];
        attribute_costs(&mut arms, "control", CampaignCost::PerArm(&given));
        assert_eq!(
            costs(&arms),
            vec![Some(0.0), Some(800.0), Some(300.0), None]
        );
        // A listed control keeps its own cost.
        let given: HashMap<String, f64> = [("control".to_string(), 25.0)].into();
        attribute_costs(&mut arms, "control", CampaignCost::PerArm(&given));
        assert_eq!(costs(&arms), vec![Some(25.0), None, None, None]);
    }

    #[test]
    fn per_arm_costs_take_precedence_over_a_total() {
        let given: HashMap<String, f64> = [("email".to_string(), 1.0)].into();
        assert_eq!(
            CampaignCost::from_columns(Some(&given), Some(9.0)),
            CampaignCost::PerArm(&given)
        );
        assert_eq!(
            CampaignCost::from_columns(None, Some(9.0)),
            CampaignCost::Total(9.0)
        );
        assert_eq!(
            CampaignCost::from_columns(None, None),
            CampaignCost::Unknown
        );
    }

    #[test]
    fn an_unknown_cost_leaves_every_arm_unknown() {
        let mut arms = vec![arm("control", 5), arm("email", 3)];
        attribute_costs(&mut arms, "control", CampaignCost::Unknown);
        assert_eq!(costs(&arms), vec![None, None]);
    }
}
