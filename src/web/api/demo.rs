//! "Try it": prepares a demo exam on the manager's host in one call — a
//! template, a proctor account, and a session whose student signs in with an
//! ordinary JWT link — so an evaluator can take the exam in one window and
//! proctor it in another, with nothing configured by hand.

use super::{Access, Ctx, Route, blocking, route};
use crate::auth::jwt::{self, LinkClaims};
use crate::auth::users::{self, UserInput};
use crate::auth::{AuthError, now_secs, random_token};
use crate::proctoring::sessions::{self, NewSession};
use crate::proctoring::templates::{self, Addons, TemplateInput};
use crate::web::WebState;
use crate::web::error::ApiError;
use axum::Json;
use axum::extract::{Extension, State};
use axum::routing::post;
use http::Method;
use serde::Serialize;
use std::sync::Arc;

const TEMPLATE: &str = "demo";
const STUDENT: &str = "demo-student";
const PROCTOR: &str = "demo-proctor";
/// How long the demo's sign-in link stays valid.
const LINK_SECS: u64 = 7 * 24 * 3600;

pub(super) fn routes() -> Vec<Route> {
    vec![route(
        Method::POST,
        "/api/v1/demo",
        Access::Manager,
        post(prepare),
    )]
}

#[derive(Serialize)]
struct Demo {
    session: String,
    /// Path of the student's sign-in link (relative to this host).
    student_link: String,
    proctor: String,
    /// Only when the proctor account was made by this call.
    proctor_password: Option<String>,
}

async fn prepare(
    State(state): State<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
) -> Result<Json<Demo>, ApiError> {
    let accounts = state.accounts.clone();
    let demo = blocking(move || {
        let store = accounts.store.as_ref();
        let who = ctx.who()?;
        let host = &ctx.host;
        let exists = store.read(|tx| templates::latest(tx, &host.id, TEMPLATE))?;
        if exists.is_none() {
            let template = TemplateInput {
                id: Some(TEMPLATE.into()),
                name: "Demo exam".into(),
                addons: Addons {
                    webcam: true,
                    microphone: true,
                    chat: true,
                    ..Addons::default()
                },
                weights: templates::default_weights(),
                threshold: Some(70.0),
                period_secs: Some(10),
                auto_conclusion: None,
            };
            templates::save(store, &host.id, &who.actor(), &template)?;
        }
        let proctor_password = match users::get(store, &host.id, PROCTOR) {
            Ok(_) => None,
            Err(AuthError::NotFound(_)) => {
                // Upper, lower, digit and symbol, for the usual password rules.
                let password = format!("Demo-{}-7q", random_token(9));
                let input = UserInput {
                    username: Some(PROCTOR.into()),
                    nickname: Some("Demo Proctor".into()),
                    role: Some("proctor".into()),
                    password: Some(password.clone()),
                    ..UserInput::default()
                };
                users::create(
                    store,
                    who,
                    &host.id,
                    &input,
                    &accounts.policy.rule,
                    &ctx.client,
                )?;
                Some(password)
            }
            Err(e) => return Err(e.into()),
        };
        let now = now_secs();
        let identifier = format!("demo-{}", random_token(6));
        let session = sessions::create(
            store,
            &host.id,
            &who.actor(),
            &NewSession {
                student: STUDENT.into(),
                subject: Some("Demo exam".into()),
                template: TEMPLATE.into(),
                proctors: vec![PROCTOR.into()],
                duration_limit: Some(30),
                identifier: Some(identifier.clone()),
                ..NewSession::default()
            },
            now,
        )?;
        let claims = LinkClaims {
            username: Some(STUDENT.into()),
            nickname: Some("Demo Student".into()),
            identifier: Some(identifier),
            exp: Some(now + LINK_SECS),
            iat: Some(now),
            ..LinkClaims::default()
        };
        let token = jwt::mint(host, &claims)?;
        Ok::<_, ApiError>(Demo {
            session: session.id,
            student_link: format!("/api/v1/auth/jwt?token={token}"),
            proctor: PROCTOR.into(),
            proctor_password,
        })
    })
    .await?;
    Ok(Json(demo))
}
