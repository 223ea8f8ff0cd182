// The fifteen metric codes (the vendor's, so integrators' reports map 1:1).
export const METRICS = [
  ['b1', 'browser not supported'], ['b2', 'focus moved to another window'], ['b3', 'full-screen mode left'],
  ['c1', 'webcam disabled'], ['c2', 'face not visible or not looking at the camera'],
  ['c3', 'several faces in front of the camera'], ['c4', 'face does not match the profile photo'],
  ['c5', 'the same face found in another session'], ['k1', 'atypical keystroke rhythm'],
  ['m1', 'microphone muted or silent'], ['m2', 'conversation or noise in the background'],
  ['n1', 'no network connection'], ['n2', 'no connection to the second (mobile) camera'],
  ['s1', 'screen not shared'], ['s2', 'second display used'],
];
