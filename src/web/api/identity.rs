//! The student's identity check over REST: the face photo, the ID document,
//! the liveness challenge and what has been checked. Only the session's
//! student sends photos; its proctors read the results and the photos.
//!
//! Recognition runs on the bounded recognition pool, off the async
//! threads; a full pool answers 429 with `Retry-After`. A photo whose
//! content is not usable (no face, several faces, too small) is answered
//! 200 with `accepted: false` and the reason in words, so the student's
//! page can say what to change; an unreadable image is a 4xx error.

use super::sessions::visible;
use super::{Access, Ctx, Route, blocking, route};
use crate::auth::{now_secs, users};
use crate::proctoring::access::Standing;
use crate::proctoring::identity::analyze::{self, Problem};
use crate::proctoring::identity::{
    self, Challenge, Comparison, DocumentCheck, FaceCheck, LivenessCheck, State,
};
use crate::proctoring::sessions::Session;
use crate::recognize::{RecognizeError, Recognizer, THRESHOLD, Verification};
use crate::web::WebState;
use crate::web::error::ApiError;
use crate::web::range;
use axum::Json;
use axum::extract::{Extension, Path, State as Shared};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Liveness frames: enough for two turns at a few frames per second.
pub const MAX_FRAMES: usize = 40;
/// Fewest frames: facing, a turn and facing again for each of two turns.
pub const MIN_FRAMES: usize = 5;
/// Largest liveness frame (a 640×480 JPEG is well under it).
pub const MAX_FRAME_BYTES: usize = 512 * 1024;

pub(super) fn routes() -> Vec<Route> {
    use Access::Signed;
    vec![
        route(
            Method::GET,
            "/api/v1/sessions/{id}/identity",
            Signed,
            get(checks),
        ),
        route(
            Method::POST,
            "/api/v1/sessions/{id}/identity/face",
            Signed,
            post(face),
        ),
        route(
            Method::GET,
            "/api/v1/sessions/{id}/identity/face",
            Signed,
            get(face_photo),
        )
        .raw(),
        route(
            Method::POST,
            "/api/v1/sessions/{id}/identity/document",
            Signed,
            post(document),
        ),
        route(
            Method::GET,
            "/api/v1/sessions/{id}/identity/document",
            Signed,
            get(document_photo),
        )
        .raw(),
        route(
            Method::POST,
            "/api/v1/sessions/{id}/identity/liveness/challenge",
            Signed,
            post(challenge),
        ),
        route(
            Method::POST,
            "/api/v1/sessions/{id}/identity/liveness",
            Signed,
            post(liveness),
        )
        .body::<LivenessBody>(),
    ]
}

/// The caller's session, when the caller is its student and it is open
/// for identity checks.
fn student_session(state: &WebState, ctx: &Ctx, id: &str) -> Result<Session, ApiError> {
    let (s, standing) = visible(state, ctx, id)?;
    if standing != Standing::Student {
        return Err(ApiError::forbidden(
            "only the session's student takes its identity check",
        ));
    }
    identity::open_for_checks(&s)?;
    Ok(s)
}

/// The photo's media type: what the client declared when it is an image,
/// else what the bytes are.
fn image_type(headers: &HeaderMap, body: &[u8]) -> Result<String, ApiError> {
    if body.is_empty() {
        return Err(ApiError::new(
            "invalid_field",
            "body: send the photo as the request body (image/jpeg, image/png or image/webp)",
        ));
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !(declared.is_empty()
        || declared.starts_with("image/")
        || declared.starts_with("application/octet-stream"))
    {
        return Err(ApiError::new(
            "unsupported_media_type",
            format!(
                "Content-Type {declared}: send the photo as image/jpeg, image/png or image/webp"
            ),
        ));
    }
    let sniffed = match image::guess_format(body) {
        Ok(image::ImageFormat::Jpeg) => "image/jpeg",
        Ok(image::ImageFormat::Png) => "image/png",
        Ok(image::ImageFormat::WebP) => "image/webp",
        _ => "application/octet-stream",
    };
    Ok(sniffed.to_string())
}

/// Runs `job` on the recognition pool and waits for it without holding an
/// async thread; a full pool is 429 at once.
async fn on_pool<T, F>(state: &WebState, job: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Recognizer) -> Result<T, RecognizeError> + Send + 'static,
{
    let service = Arc::clone(&state.recognition.service);
    let answer = tokio::task::spawn_blocking(move || service.pool()?.submit(job))
        .await
        .map_err(|e| ApiError::internal("internal", e))??;
    answer
        .await
        .map_err(|e| ApiError::internal("internal", e))?
        .map_err(ApiError::from)
}

/// Stores a photo object durably before any record names it.
async fn store_photo(state: &WebState, key: &str, bytes: Bytes) -> Result<(), ApiError> {
    state
        .objects
        .put(key, bytes)
        .await
        .map(|_| ())
        .map_err(|e| ApiError::internal("storage_error", e))
}

async fn refused(
    state: &WebState,
    s: &Session,
    by: String,
    check: &'static str,
    problem: &Problem,
) -> Result<(), ApiError> {
    let (store, s, code) = (state.accounts.store.clone(), s.clone(), problem.code());
    blocking(move || identity::record_refused(store.as_ref(), &s, &by, check, code, now_secs()))
        .await
}

/// The answer to a face photo, for the student.
#[derive(Serialize)]
struct FaceAnswer {
    accepted: bool,
    /// `no_face`, `several_faces` or `face_too_small` when not accepted.
    problem: Option<&'static str>,
    /// What happened, in words.
    message: String,
    /// The face found: x, y, width, height in pixels.
    face_box: Option<[f32; 4]>,
    /// Against the profile photo (the vendor's shape), when there is one.
    profile: Option<Comparison>,
    profile_problem: Option<String>,
}

async fn face(
    Shared(state): Shared<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<FaceAnswer>, ApiError> {
    let s = student_session(&state, &ctx, &id)?;
    let content_type = image_type(&headers, &body)?;
    let by = ctx.who()?.actor();
    let store = state.accounts.store.clone();
    let (host, student) = (s.host_id.clone(), s.student.clone());
    let profile_key = blocking(move || {
        Ok::<_, ApiError>(
            users::get(store.as_ref(), &host, &student)
                .ok()
                .and_then(|u| u.photo),
        )
    })
    .await?;
    let profile = match profile_key {
        None => None,
        Some(key) => Some(state.objects.get(&key).await.map_err(|e| {
            tracing::warn!(session = s.id, "profile photo {key} unreadable: {e}");
            "the profile photo cannot be read".to_string()
        })),
    };
    let photo = body.clone();
    let outcome = on_pool(&state, move |r| {
        let image = r.decode(&photo)?;
        let found = match analyze::face_photo(r, &image)? {
            Ok(found) => found,
            Err(problem) => return Ok(Err(problem)),
        };
        let compared = match profile {
            None => Ok(None),
            Some(Err(problem)) => Err(problem),
            Some(Ok(bytes)) => r
                .decode(&bytes)
                .and_then(|p| r.main_embedding(&p, "profile"))
                .map(|(_, e)| {
                    Some(Comparison::from(Verification::compare(
                        &found.embedding,
                        &e,
                        THRESHOLD,
                    )))
                })
                .map_err(|e| format!("the profile photo cannot be compared: {e}")),
        };
        Ok(Ok((found, compared)))
    })
    .await?;
    let (found, compared) = match outcome {
        Ok(done) => done,
        Err(problem) => {
            refused(&state, &s, by, "face", &problem).await?;
            return Ok(Json(FaceAnswer {
                accepted: false,
                problem: Some(problem.code()),
                message: problem.message(),
                face_box: None,
                profile: None,
                profile_problem: None,
            }));
        }
    };
    let (profile, profile_problem) = match compared {
        Ok(p) => (p, None),
        Err(problem) => (None, Some(problem)),
    };
    let at = now_secs();
    let key = identity::photo_key(&s, "face", at);
    store_photo(&state, &key, body).await?;
    let b = found.face.bbox;
    let check = FaceCheck {
        at,
        photo: key,
        content_type,
        face_box: [b.x, b.y, b.width, b.height],
        profile,
        profile_problem: profile_problem.clone(),
        elsewhere: Vec::new(),
    };
    let (store, index) = (state.accounts.store.clone(), state.faces.clone());
    let session = s.clone();
    let embedding = found.embedding;
    let updated = blocking(move || {
        let mut check = check;
        // c5: the same face checked in to another student's session here.
        check.elsewhere = index.search(
            store.as_ref(),
            &session.host_id,
            &session.id,
            &session.student,
            &embedding,
            THRESHOLD,
        )?;
        let updated = identity::record_face(store.as_ref(), &session, &by, &check, &embedding)?;
        index.put(&session.host_id, &session.id, &session.student, &embedding);
        Ok::<_, ApiError>((updated, identity::face_values(&check)))
    })
    .await?;
    let (updated, values) = updated;
    state.hub.announce_metrics(&updated, &values);
    let message = match &profile {
        Some(p) if !p.verified => {
            "photo taken, but the face does not match your profile photo: take it again facing the camera in good light, or tell the proctor"
        }
        Some(_) => "photo taken; the face matches your profile photo",
        None => "photo taken",
    };
    Ok(Json(FaceAnswer {
        accepted: true,
        problem: None,
        message: message.to_string(),
        face_box: Some([b.x, b.y, b.width, b.height]),
        profile,
        profile_problem,
    }))
}

/// The answer to a document photo.
#[derive(Serialize)]
struct DocumentAnswer {
    accepted: bool,
    problem: Option<&'static str>,
    message: String,
    /// The document's face against the face photo (the vendor's shape).
    comparison: Option<Comparison>,
    /// What was read from the document: the machine-readable zone's fields
    /// when every check digit verified, its lines, and named problems.
    fields: Option<serde_json::Value>,
}

/// The part of a document reading kept with the check: the zone (fields,
/// lines) and the problems; not every text line, which may hold more
/// personal data than the check needs.
fn document_fields(read: &crate::recognize::document::Document) -> serde_json::Value {
    serde_json::json!({
        "mrz": read.mrz,
        "mrz_lines": read.mrz_lines,
        "problems": read.problems,
        "upside_down": read.upside_down,
    })
}

/// The reference face, or a clear "take the face photo first".
async fn reference_of(
    state: &WebState,
    s: &Session,
) -> Result<crate::recognize::Embedding, ApiError> {
    let (store, host, id) = (
        state.accounts.store.clone(),
        s.host_id.clone(),
        s.id.clone(),
    );
    blocking(move || identity::reference(store.as_ref(), &host, &id))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                "conflict",
                "take the face photo first: the other checks compare with its face",
            )
        })
}

async fn document(
    Shared(state): Shared<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<DocumentAnswer>, ApiError> {
    let s = student_session(&state, &ctx, &id)?;
    let content_type = image_type(&headers, &body)?;
    let by = ctx.who()?.actor();
    let reference = reference_of(&state, &s).await?;
    let photo = body.clone();
    let service = Arc::clone(&state.recognition.service);
    let (compared, fields) = on_pool(&state, move |r| {
        let image = r.decode(&photo)?;
        let read = crate::recognize::document::read(r, service.ocr()?, &image)?;
        let compared = read
            .embedding
            .as_ref()
            .map(|e| Comparison::from(Verification::compare(e, &reference, THRESHOLD)));
        Ok((compared, document_fields(&read)))
    })
    .await?;
    let Some(comparison) = compared else {
        refused(&state, &s, by, "document", &Problem::NoFace).await?;
        return Ok(Json(DocumentAnswer {
            accepted: false,
            problem: Some(Problem::NoFace.code()),
            message: "no face was found on the document: hold the page with the photo flat and close to the camera".into(),
            comparison: None,
            fields: Some(fields),
        }));
    };
    let at = now_secs();
    let key = identity::photo_key(&s, "document", at);
    store_photo(&state, &key, body).await?;
    let check = DocumentCheck {
        at,
        photo: key,
        content_type,
        comparison,
        fields: Some(fields),
    };
    let (store, session, record) = (state.accounts.store.clone(), s.clone(), check.clone());
    blocking(move || identity::record_document(store.as_ref(), &session, &by, &record)).await?;
    Ok(Json(DocumentAnswer {
        accepted: true,
        problem: None,
        message: if comparison.verified {
            "the document's photo matches your face"
        } else {
            "the document's photo does not match your face: take it again, sharp and without glare, or tell the proctor"
        }
        .into(),
        comparison: Some(comparison),
        fields: check.fields,
    }))
}

async fn challenge(
    Shared(state): Shared<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<Challenge>, ApiError> {
    let s = student_session(&state, &ctx, &id)?;
    reference_of(&state, &s).await?;
    let store = state.accounts.store.clone();
    let c = blocking(move || identity::new_challenge(store.as_ref(), &s, now_secs())).await?;
    Ok(Json(c))
}

/// Frames of a liveness attempt.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct LivenessBody {
    /// The challenge's `id`.
    challenge: String,
    /// JPEG (or PNG, WebP) frames in capture order, base64, optionally as
    /// `data:` URLs; at most 40, each at most 512 KiB.
    frames: Vec<String>,
}

/// The liveness verdict, for the student.
#[derive(Serialize)]
struct LivenessAnswer {
    live: bool,
    message: String,
    #[serde(flatten)]
    check: LivenessCheck,
}

fn frames(body: &LivenessBody) -> Result<Vec<Bytes>, ApiError> {
    if body.frames.len() < MIN_FRAMES || body.frames.len() > MAX_FRAMES {
        return Err(ApiError::new(
            "invalid_field",
            format!(
                "frames: send {MIN_FRAMES} to {MAX_FRAMES} frames, not {}",
                body.frames.len()
            ),
        ));
    }
    body.frames
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let data = f.split_once(";base64,").map_or(f.as_str(), |(_, d)| d);
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| {
                    ApiError::new("invalid_field", format!("frames[{i}]: not base64: {e}"))
                })?;
            if bytes.is_empty() || bytes.len() > MAX_FRAME_BYTES {
                return Err(ApiError::new(
                    "invalid_field",
                    format!(
                        "frames[{i}]: {} bytes; a frame must be 1 to {MAX_FRAME_BYTES} bytes",
                        bytes.len()
                    ),
                ));
            }
            Ok(Bytes::from(bytes))
        })
        .collect()
}

async fn liveness(
    Shared(state): Shared<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    Json(body): Json<LivenessBody>,
) -> Result<Json<LivenessAnswer>, ApiError> {
    let s = student_session(&state, &ctx, &id)?;
    let frames = frames(&body)?;
    let by = ctx.who()?.actor();
    let reference = reference_of(&state, &s).await?;
    let (store, session, challenge) = (state.accounts.store.clone(), s.clone(), body.challenge);
    let turns = blocking(move || {
        identity::take_challenge(store.as_ref(), &session, &challenge, now_secs())
    })
    .await?;
    let asked = turns.clone();
    let count = frames.len();
    let outcome = on_pool(&state, move |r| {
        let decoded = frames
            .iter()
            .enumerate()
            .map(|(i, f)| {
                r.decode(f).map_err(|e| match e {
                    RecognizeError::UnsupportedFormat(m) => {
                        RecognizeError::UnsupportedFormat(format!("frames[{i}]: {m}"))
                    }
                    RecognizeError::Corrupt(m) => {
                        RecognizeError::Corrupt(format!("frames[{i}]: {m}"))
                    }
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        analyze::liveness(r, &decoded, &asked, &reference)
    })
    .await?;
    let v = outcome.verdict;
    let check = LivenessCheck {
        at: now_secs(),
        live: v.live,
        turns: turns
            .iter()
            .map(|t| format!("{t:?}").to_ascii_lowercase())
            .collect(),
        completed: v.completed,
        frames: count,
        faces: outcome.faces,
        reason: v.reason,
        yaw: v.yaw,
    };
    let (store, session, record) = (state.accounts.store.clone(), s.clone(), check.clone());
    blocking(move || identity::record_liveness(store.as_ref(), &session, &by, &record)).await?;
    let message = if check.live {
        "liveness confirmed".to_string()
    } else {
        format!(
            "not confirmed: {}; ask for a new challenge and turn your head as shown",
            check.reason.as_deref().unwrap_or("the turns were not seen")
        )
    };
    Ok(Json(LivenessAnswer {
        live: check.live,
        message,
        check,
    }))
}

async fn checks(
    Shared(state): Shared<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
) -> Result<Json<State>, ApiError> {
    let (s, standing) = visible(&state, &ctx, &id)?;
    let store = state.accounts.store.clone();
    let mut found = blocking(move || identity::state(store.as_ref(), &s)).await?;
    // Other students' sessions are for staff's eyes only.
    if standing == Standing::Student
        && let Some(face) = &mut found.checks.face
    {
        face.elsewhere.clear();
    }
    Ok(Json(found))
}

#[derive(Clone, Copy)]
enum Which {
    Face,
    Document,
}

async fn face_photo(
    state: Shared<Arc<WebState>>,
    ctx: Extension<Ctx>,
    id: Path<String>,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    photo(state, ctx, id, request, Which::Face).await
}

async fn document_photo(
    state: Shared<Arc<WebState>>,
    ctx: Extension<Ctx>,
    id: Path<String>,
    request: HeaderMap,
) -> Result<Response, ApiError> {
    photo(state, ctx, id, request, Which::Document).await
}

async fn photo(
    Shared(state): Shared<Arc<WebState>>,
    Extension(ctx): Extension<Ctx>,
    Path(id): Path<String>,
    request: HeaderMap,
    which: Which,
) -> Result<Response, ApiError> {
    let (s, _) = visible(&state, &ctx, &id)?;
    let store = state.accounts.store.clone();
    let checks = blocking(move || {
        store
            .read(|tx| identity::checks_in(tx, &s.host_id, &s.id))
            .map_err(ApiError::from)
    })
    .await?;
    let found = match which {
        Which::Face => checks.face.map(|f| (f.photo, f.content_type)),
        Which::Document => checks.document.map(|d| (d.photo, d.content_type)),
    };
    let (key, content_type) =
        found.ok_or_else(|| ApiError::not_found("no such photo has been taken yet"))?;
    let bytes = state
        .objects
        .get(&key)
        .await
        .map_err(|e| ApiError::internal("storage_error", e))?;
    let mut out = HeaderMap::new();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    // A new photo gets a new key, so the key is the version.
    out.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    let etag = format!("\"{}\"", key.rsplit('/').next().unwrap_or("photo"));
    Ok(range::respond(bytes.to_vec(), out, &request, &etag))
}
